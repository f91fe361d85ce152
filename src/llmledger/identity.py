"""One model identity for matching limits, counting, reconciling and reporting.

Providers answer with a dated snapshot (`gpt-4o-mini` answers `gpt-4o-mini-2024-07-18`), accept
moving aliases (`claude-3-5-sonnet-latest`, `grok-4-latest`), and Azure names a deployment rather
than a model. Everything that compares model names goes through `model_identity()`:

1. an alias set with `alias_models()` (exact name -> model), e.g. an Azure deployment name;
2. a name that carries its model creator — a relay's `vendor/model` (OpenRouter
   `openai/gpt-4o`, `anthropic/claude-sonnet-4.5`; Together, Groq, Fireworks use the same form)
   or a Bedrock model id or inference profile (`us.anthropic.claude-3-5-sonnet-20240620-v1:0`) —
   goes by the creator's catalogue id when the creator's catalogue knows the rest of the name
   (`gpt-4o`, `claude-sonnet-4-5`, `claude-3-5-sonnet`): a limit on a model sees that model's calls
   through every host. Scope a limit by `provider=` to cap one host only;
3. the genai-prices catalogue: the id of the catalogue model whose match rules take the name
   (`gpt-4o-mini`, `gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`), looked up under the call's provider
   first, then under any provider;
4. otherwise the name itself.

Identity is for matching and grouping only: a call is still priced at the host's own price for
the name it used.

The identity depends only on the catalogue and the aliases you set, so every process (the app's
workers, the CLI, a reconcile job) agrees on it. A call or event also matches a name that no alias
or catalogue entry knows (an Azure deployment, a relay's alias) by its *requested* name
(`known_model()` tells which names those are), so a limit or report named by a deployment finds
the deployment's calls everywhere.

Names learned from responses (`learn()`: a deployment answered by a model the catalogue knows)
stay in the process that saw them and are used only where knowing more can only make a decision
stricter: admitting a call to a deployment against a limit on the model it serves
(`admission_identity()`), and estimating its worst-case price. Name deployments with
`alias_models()` for the first call of each process to be checked too.

A soft limit's downgrade sends another model, and the call then counts under the model that served
it. Results are cached; the catalogue is read once per process (about 0.3 s, on first use).
This module sits beside `events` (no storage or SDK imports) so that limits, counters, reports and
reconciliation can all use it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from llmledger.errors import InvalidUsageError

__all__ = [
    "admission_identity",
    "alias_models",
    "forget_learned",
    "generation",
    "known_model",
    "learn",
    "model_identity",
]

_MAX_CACHE = 4096
_MAX_NAME = 256
"""The longest alias or model name `alias_models()` takes (as the event's model field)."""
_lock = threading.Lock()
_aliases: dict[str, str] = {}
_learned: dict[tuple[str | None, str], str] = {}
_cache: dict[tuple[str, str | None], tuple[str, bool]] = {}
_generation = 0


def generation() -> int:
    """A number that changes whenever an alias is set or a name is learned (caches of unknown names
    compare it to know when to look again)."""
    return _generation


def alias_models(mapping: Mapping[str, str] | None) -> None:
    """Name models by other names: `{"prod-mini": "gpt-4o-mini"}` (an Azure deployment, a relay's
    alias). Replaces earlier aliases; None or {} clears them. Raises `InvalidUsageError` for a key or
    value that is not a non-empty string."""
    if mapping is not None and not isinstance(mapping, Mapping):
        raise InvalidUsageError(
            "model aliases must be a mapping such as {'prod-mini': 'gpt-4o-mini'}, "
            f"got {type(mapping).__name__}"
        )
    out: dict[str, str] = {}
    for name, model in (mapping or {}).items():
        for what, value in (("alias", name), ("model", model)):
            if (
                not isinstance(value, str)
                or not value.strip()
                or len(value) > _MAX_NAME
                or not value.isprintable()
            ):
                raise InvalidUsageError(
                    f"model aliases: {what} must be a non-empty printable string of at most "
                    f"{_MAX_NAME} characters, got {value!r:.80}"
                )
        out[name.strip()] = model.strip()
    for name in out:  # a -> b -> ... -> a would name no model at all
        path, step = [name], out[name]
        while step in out:
            if step in path:
                raise InvalidUsageError(f"model aliases: {name!r} leads back to itself ({' -> '.join(path)})")
            path.append(step)
            step = out[step]
    global _aliases, _generation
    with _lock:
        _aliases = out
        _cache.clear()
        _generation += 1


def model_identity(model: str | None, provider: str | None = None) -> str | None:
    """The one name a model goes by (see the module doc); None for None. The same in every
    process: it depends on the catalogue and the aliases set, never on calls seen."""
    if model is None:
        return None
    if not isinstance(model, str):
        raise InvalidUsageError(f"model must be a string, got {type(model).__name__}")
    return _cached(model, provider)[0]


def known_model(model: str, provider: str | None = None) -> bool:
    """Whether an alias or the catalogue knows `model` (False for an Azure deployment name or a
    relay's alias: such a name is matched as requested, see the module doc)."""
    return _cached(model, provider)[1]


def admission_identity(model: str | None, provider: str | None = None) -> str | None:
    """`model_identity()`, or — for a name it does not know — the model this process learned
    serves it (`learn()`). Used only to admit calls (it can only make that stricter), never to
    count, reconcile or report, which must agree across processes."""
    if model is None:
        return None
    identity, known = _cached(model, provider)
    if known:
        return identity
    return _learned.get((provider, identity), identity)


def _cached(model: str, provider: str | None) -> tuple[str, bool]:
    key = (model, provider)
    hit = _cache.get(key)
    if hit is None:
        hit = _resolve(model, provider)
        with _lock:
            if len(_cache) >= _MAX_CACHE:
                _cache.clear()
            _cache[key] = hit
    return hit


def learn(provider: str | None, requested: str | None, answered: str | None) -> None:
    """Remember that `requested` (a name the catalogue does not know) was served by `answered`."""
    if not requested or not answered or requested == answered:
        return
    name, known = _cached(requested, provider)
    if known:
        return  # a known model name: it has its own identity (a downgrade does not rename it)
    identity, known = _cached(answered, provider)
    if not known or _learned.get((provider, name)) == identity:
        return
    global _generation
    with _lock:
        if len(_learned) < _MAX_CACHE:
            _learned[(provider, name)] = identity
        _generation += 1


def forget_learned() -> None:
    """Forget every name learned from responses (`learn()`): called by `llmledger.shutdown()` and
    when `init()` installs a new runtime, so what one runtime saw never admits calls of the next.
    Aliases (`alias_models()`) are configuration and stay."""
    global _generation
    with _lock:
        if _learned:
            _learned.clear()
            _generation += 1


_CREATORS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "x-ai": "x-ai",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "deepseek-ai": "deepseek",
    "mistral": "mistral",
    "mistralai": "mistral",
    "meta": "meta",
    "meta-llama": "meta",
    "cohere": "cohere",
    "moonshotai": "moonshotai",
    "z-ai": "zai",
    "zai-org": "zai",
    "minimax": "minimax",
    "perplexity": "perplexity",
}
"""A relay's or Bedrock's vendor prefix -> the genai-prices provider that publishes the model."""

_BEDROCK = re.compile(
    r"^(?:(?:us|eu|apac|global|us-gov|ca|jp|au)\.)?"  # a cross-region inference profile's prefix
    r"(?P<vendor>[a-z0-9-]+)\.(?P<name>[^/:.][^/]*?)"
    r"(?:-v\d+(?::\d+)?|-\d+:\d+|:\d+)?$"  # the model version: -v1:0, -v2, -1:0
)


def _creator_id(model: str) -> str | None:
    """The creator's catalogue id of a `vendor/model` or Bedrock `[region.]vendor.model-v1:0` name
    whose creator's catalogue knows the rest of the name; None otherwise."""
    if "/" in model:
        vendor, _, rest = model.partition("/")
    else:
        bedrock = _BEDROCK.match(model)
        if bedrock is None:
            return None
        vendor, rest = bedrock["vendor"], bedrock["name"]
    creator = _CREATORS.get(vendor.lower())
    if creator is None or not rest:
        return None
    return _catalogue_id(rest, creator, anywhere=False)


def _resolve(model: str, provider: str | None) -> tuple[str, bool]:
    """(identity, whether the catalogue or an alias knows the model)."""
    name = _aliases.get(model.strip(), model.strip())
    found = _creator_id(name) or _catalogue_id(name, provider)
    if found is not None:
        return found, True
    return name, name != model.strip()


def _catalogue_id(model: str, provider: str | None, anywhere: bool = True) -> str | None:
    """The catalogue id that takes `model` under `provider`, then (`anywhere`) under any provider."""
    from genai_prices import data_snapshot  # not at import: `import llmledger` stays light

    from llmledger.pricing.catalog import PROVIDER_ALIASES

    snapshot = data_snapshot.get_snapshot()  # loaded once by genai-prices, then cached
    provider_id = PROVIDER_ALIASES.get(provider, provider) if provider else None
    for pid in ((provider_id, None) if anywhere else (provider_id,)) if provider_id else (None,):
        try:
            _, info = snapshot.find_provider_model(model, None, pid, None)
        except LookupError:
            continue
        return str(info.id)
    return None
