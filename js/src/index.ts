/**
 * `@llmledger/sdk`: the official `openai` client, pointed at a self-hosted llmledger gateway
 * (`llmledger serve` or `llmledger proxy`), which meters, attributes and limits every call.
 *
 * ```ts
 * import { LedgerOpenAI } from "@llmledger/sdk";
 * const client = new LedgerOpenAI({
 *   providerApiKey: process.env.OPENAI_API_KEY,   // omit when the gateway's routes hold the keys
 *   providerApiBase: "https://api.openai.com/v1",
 *   ledgerKey: process.env.LLMLEDGER_API_KEY,
 *   ledgerUrl: "http://127.0.0.1:8787",
 *   extraHeaders: { user: "u-42", plan: "pro", feature: "chat" },
 * });
 * await client.chat.completions.create({ model: "gpt-4o-mini", messages }, { headers: ledgerHeaders({ user: "u-7" }) });
 * ```
 */
import OpenAI from "openai";

/** Where `llmledger serve` / `llmledger proxy` listen by default. */
export const DEFAULT_LEDGER_URL = "http://127.0.0.1:8787";

const SHORT_NAMES: Readonly<Record<string, string>> = {
  tenant: "X-Ledger-Tenant",
  user: "X-Ledger-User",
  org: "X-Ledger-Org",
  feature: "X-Ledger-Feature",
  agent: "X-Ledger-Agent",
  session: "X-Ledger-Session",
  plan: "X-Ledger-Tag-plan",
  project: "X-Ledger-Tag-project",
};

/** A bad argument to a llmledger client: the message names it and says what to pass. */
export class LedgerConfigError extends Error {
  override name = "LedgerConfigError";
}

/** Attribution by short name (`user`, `org`, `plan`, `project`, `feature`, `tenant`, `agent`,
 * `session`) as the gateway's headers; any other name is sent as given. */
export function ledgerHeaders(labels: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(labels)) {
    if (typeof value !== "string") {
      throw new LedgerConfigError(`extraHeaders: ${name} must be a string, got ${typeof value}`);
    }
    out[SHORT_NAMES[name.toLowerCase()] ?? name] = value;
  }
  return out;
}

type BaseOptions = NonNullable<ConstructorParameters<typeof OpenAI>[0]>;

/** The options of `LedgerOpenAI`: the gateway's, then any `openai` client option but `apiKey`,
 * `baseURL` (set from them). */
export interface LedgerOpenAIOptions extends Omit<BaseOptions, "apiKey" | "baseURL"> {
  /** Your provider key, passed through to the provider; omit it when the gateway's routes hold keys. */
  providerApiKey?: string | undefined;
  /** The provider's base URL (e.g. `https://api.openai.com/v1`); default: the gateway's route for
   * the model, else OpenAI. */
  providerApiBase?: string | undefined;
  /** Your llmledger key (`llk_...`); default: the `LLMLEDGER_API_KEY` environment variable. */
  ledgerKey?: string | undefined;
  /** The gateway; default: `LLMLEDGER_GATEWAY_URL`, else http://127.0.0.1:8787. */
  ledgerUrl?: string | undefined;
  /** Attribution for every call, by short name (`user`, `org`, `plan`, `project`, `feature`, ...). */
  extraHeaders?: Readonly<Record<string, string>> | undefined;
}

function env(name: string): string | undefined {
  const value = typeof process === "undefined" ? undefined : process.env[name];
  return value === "" ? undefined : value;
}

/** `OpenAI` through the llmledger gateway: every method, type and error of the official client.
 * Throws `LedgerConfigError` for a missing ledger key or a malformed URL. */
export class LedgerOpenAI extends OpenAI {
  constructor(options: LedgerOpenAIOptions = {}) {
    const { providerApiKey, providerApiBase, ledgerKey, ledgerUrl, extraHeaders, defaultHeaders, ...rest } =
      options;
    const key = ledgerKey ?? env("LLMLEDGER_API_KEY");
    if (typeof key !== "string" || !key.startsWith("llk_")) {
      throw new LedgerConfigError(
        "ledgerKey: pass the llmledger key (llk_...) the gateway gave you, or set LLMLEDGER_API_KEY",
      );
    }
    const url = (ledgerUrl ?? env("LLMLEDGER_GATEWAY_URL") ?? DEFAULT_LEDGER_URL).replace(/\/+$/, "");
    if (!/^https?:\/\//.test(url)) {
      throw new LedgerConfigError(`ledgerUrl must be the gateway's http(s) URL, got ${JSON.stringify(url)}`);
    }
    const headers: Record<string, string> = { "X-Ledger-Key": key };
    if (providerApiBase !== undefined) {
      if (!/^https?:\/\//.test(providerApiBase)) {
        throw new LedgerConfigError(
          `providerApiBase must be the provider's http(s) base URL, got ${JSON.stringify(providerApiBase)}`,
        );
      }
      headers["X-Ledger-Upstream"] = providerApiBase;
    }
    super({
      ...rest,
      apiKey: providerApiKey ?? key,
      baseURL: `${url}/v1`,
      defaultHeaders: { ...headers, ...ledgerHeaders(extraHeaders ?? {}), ...(defaultHeaders ?? {}) },
    });
  }
}

export default LedgerOpenAI;
