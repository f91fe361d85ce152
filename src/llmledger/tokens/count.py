"""Count tokens with OpenAI's public encodings (bpe-openai, loaded lazily), or bound them safely.

Why `bpe-openai`: its wheel bundles `o200k_base` and `cl100k_base`, so it works offline and in
air-gapped deployments; `tiktoken` downloads its encodings from the network at first use (and the
packages that ship files for it carry `cl100k_base` only). Measured here (docs/performance.md):
importing the package ~0.7 s once, building `o200k_base` ~0.09 s, then ~1.2 ms per 27 KB of text —
so the load happens on first use (or on a background thread via `warm()`), never at import.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Protocol

from llmledger.errors import InvalidUsageError

__all__ = ["count_tokens", "encoding_for_model", "tokenizer_available", "upper_bound_tokens", "warm"]

log = logging.getLogger("llmledger")

# Model-name prefixes (after any `provider/` or `ft:` prefix) -> encoding. Longest prefix wins.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex-", "o200k_base"),
    ("computer-use-", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)
_SORTED = tuple(sorted(_PREFIXES, key=lambda p: -len(p[0])))


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


_lock = threading.Lock()
"""Held while a tokenizer is imported and built (`_load`), and across a `fork()` (see below)."""
_encodings: dict[str, _Encoding | None] = {}
_missing_logged = False
_FORK_WAIT = 10.0
_held_at_fork = False
_torn_by_fork = False
"""This process was forked while another thread of its parent was loading a tokenizer and the wait
for it timed out: what it inherited may be half initialised for good, so nothing more is loaded."""


def _before_fork() -> None:
    # Another thread (`warm()`, the writer) may be in the middle of `import bpe_openai`: a child
    # forked now would inherit the half-initialised module (and its import lock held by a thread
    # that does not exist in the child), so it could never count. Wait for that load to finish
    # (bounded: a fork never hangs on us).
    global _held_at_fork
    _held_at_fork = _lock.acquire(timeout=_FORK_WAIT)


def _after_fork_in_parent() -> None:
    global _held_at_fork
    if _held_at_fork:
        _held_at_fork = False
        _lock.release()


def _after_fork_in_child() -> None:
    global _lock, _held_at_fork, _torn_by_fork
    if not _held_at_fork:  # the wait timed out: a load was cut by the fork
        _torn_by_fork = True
    _held_at_fork = False
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


def encoding_for_model(model: str | None) -> str | None:
    """The public encoding of an OpenAI model name (`o200k_base`, `cl100k_base`), or None.

    Accepts dated snapshots (`gpt-4o-2024-08-06`), `openai/` prefixes and fine-tune ids
    (`ft:gpt-4o-mini:org::id`). Models of other vendors give None.
    """
    if not isinstance(model, str) or not model:
        return None
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:]
    name = name.rsplit("/", 1)[-1]
    for prefix, encoding in _SORTED:
        if name.startswith(prefix):
            return encoding
    return None


def _load(name: str) -> _Encoding | None:
    global _missing_logged
    with _lock:
        if name in _encodings:
            return _encodings[name]
        encoding: _Encoding | None
        if _torn_by_fork:
            # loading it again could wait forever for a lock of the parent's (absent) thread
            log.warning(
                "llmledger: this process was forked while its parent was loading the %s tokenizer; "
                "using the safe bound",
                name,
            )
            _encodings[name] = None
            return None
        try:
            with warnings.catch_warnings():  # its resource loading warns on Python >= 3.11
                warnings.simplefilter("ignore", DeprecationWarning)
                import bpe_openai

                encoding = bpe_openai.get_encoding(name)
        except ImportError:
            encoding = None
            if not _missing_logged:
                _missing_logged = True
                log.info(
                    "llmledger: bpe-openai is not installed (pip install 'llmledger[tokens]'): "
                    "token counts of OpenAI models fall back to the safe bound"
                )
        except Exception as exc:  # a broken install: fall back to the bound, never fail the caller
            encoding = None
            log.warning("llmledger: cannot load the %s tokenizer (%s); using the safe bound", name, exc)
        _encodings[name] = encoding
        return encoding


def _encoding(model: str | None, load: bool = True) -> _Encoding | None:
    name = encoding_for_model(model)
    if name is None:
        return None
    if name in _encodings:
        return _encodings[name]
    return _load(name) if load else None


def tokenizer_available(model: str | None) -> bool:
    """Whether `count_tokens` can count `model`'s tokens exactly here (loads the tokenizer)."""
    return _encoding(model) is not None


class NotText(InvalidUsageError, TypeError):
    """Text given to `llmledger.tokens` is not a string: an llmledger error, and a `TypeError` as
    these functions raised before."""


def count_tokens(text: str, model: str | None, *, load: bool = True) -> int | None:
    """The exact number of tokens `model`'s tokenizer makes of `text`, or None when none is available.

    `text` is counted as ordinary text (special-token strings such as `<|endoftext|>` count as text,
    the way the API counts user content). None for models without a public offline tokenizer
    (Anthropic, Gemini, ...) or when `bpe-openai` is not installed: use `upper_bound_tokens` then.
    `load=False` never loads the tokenizer on this thread (None until it is loaded, e.g. by `warm()`).
    Raises `InvalidUsageError` (also a `TypeError`) if `text` is not a string.
    """
    if not isinstance(text, str):
        raise NotText(f"count_tokens needs a str, got {type(text).__name__}")
    encoding = _encoding(model, load)
    if encoding is None:
        return None
    if not text:
        return 0
    return _count(encoding, text)


def _count(encoding: _Encoding, text: str) -> int:
    try:
        return len(encoding.encode_ordinary(text))
    except Exception:  # e.g. a lone surrogate the Rust side refuses: count its UTF-8 bytes instead
        return upper_bound_tokens(text)


def upper_bound_tokens(text: str) -> int:
    """A safe upper bound of the tokens any byte-level tokenizer makes of `text`: its UTF-8 bytes.

    Holds for byte-level BPE (OpenAI, Anthropic's Claude tokenizers, Llama 3...) and SentencePiece
    with byte fallback (Gemini, Llama 2, Mistral): every token covers at least one byte. Lone
    surrogates (not encodable) count 3 bytes each, as their UTF-8-with-surrogates form would.
    """
    if not isinstance(text, str):
        raise NotText(f"upper_bound_tokens needs a str, got {type(text).__name__}")
    return len(text.encode("utf-8", "surrogatepass"))


def warm(models: tuple[str, ...] = ("gpt-4o", "gpt-4")) -> threading.Thread:
    """Load the encodings `models` use on a background (daemon) thread; returns the thread.

    A `fork()` meanwhile waits for the load to finish (`_before_fork`). The one module the load
    imports that registers fork handlers of its own is imported here first: one registered while
    a fork waits would have its `after_in_parent` handler run without its `before`."""
    import concurrent.futures.thread  # noqa: F401  (see above)

    def load() -> None:
        for model in models:
            name = encoding_for_model(model)
            if name is not None:
                _load(name)

    thread = threading.Thread(target=load, name="llmledger-tokenizer", daemon=True)
    thread.start()
    return thread
