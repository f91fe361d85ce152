/**
 * What every llmledger client shares: attribution headers by short name, the configuration error,
 * and the options that point an official client at the gateway.
 */

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

/** The gateway's options, the same for every client. */
export interface LedgerOptions {
  /** Your provider key, passed through to the provider; omit it when the gateway's routes hold keys. */
  providerApiKey?: string | undefined;
  /** The provider's base URL as its SDK takes it (`https://api.openai.com/v1`,
   * `https://api.anthropic.com`); default: the gateway's route for the model, else the provider's. */
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

/** An official client's `apiKey`, `baseURL` and `defaultHeaders` for the gateway under `path`
 * (`/v1`, `/anthropic`), from `options`; the client's own options in `rest` are kept. Throws
 * `LedgerConfigError` for a missing ledger key or a malformed URL. */
export function gatewayOptions<Rest extends { defaultHeaders?: unknown }>(
  path: string,
  options: LedgerOptions & Rest,
): Omit<Rest, "defaultHeaders"> & { apiKey: string; baseURL: string; defaultHeaders: Record<string, string> } {
  const { providerApiKey, providerApiBase, ledgerKey, ledgerUrl, extraHeaders, defaultHeaders, ...rest } = options;
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
  const own = (defaultHeaders ?? {}) as Record<string, string>;
  return {
    ...(rest as Omit<Rest, "defaultHeaders">),
    apiKey: providerApiKey ?? key,
    baseURL: `${url}${path}`,
    defaultHeaders: { ...headers, ...ledgerHeaders(extraHeaders ?? {}), ...own },
  };
}
