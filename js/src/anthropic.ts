/**
 * `LedgerAnthropic`: the official `@anthropic-ai/sdk` client pointed at a self-hosted llmledger
 * gateway, with the same options as `LedgerOpenAI`.
 *
 * ```ts
 * import { LedgerAnthropic } from "@llmledger/sdk/anthropic";
 * const client = new LedgerAnthropic({
 *   providerApiKey: process.env.ANTHROPIC_API_KEY,   // omit when the gateway's routes hold the keys
 *   providerApiBase: "https://api.anthropic.com",
 *   ledgerKey: process.env.LLMLEDGER_API_KEY,
 *   ledgerUrl: "http://127.0.0.1:8787",
 *   extraHeaders: { user: "u-42", plan: "pro" },
 * });
 * ```
 */
import Anthropic from "@anthropic-ai/sdk";

import { gatewayOptions, type LedgerOptions } from "./common.js";

export { DEFAULT_LEDGER_URL, LedgerConfigError, ledgerHeaders, type LedgerOptions } from "./common.js";

type BaseOptions = NonNullable<ConstructorParameters<typeof Anthropic>[0]>;

/** The options of `LedgerAnthropic`: the gateway's, then any `@anthropic-ai/sdk` client option but
 * `apiKey`, `authToken`, `baseURL` (set from them). */
export interface LedgerAnthropicOptions extends Omit<BaseOptions, "apiKey" | "authToken" | "baseURL">, LedgerOptions {}

/** `Anthropic` through the llmledger gateway (under `/anthropic`): every method, type and error of
 * the official client. Throws `LedgerConfigError` for a missing ledger key or a malformed URL. */
export class LedgerAnthropic extends Anthropic {
  constructor(options: LedgerAnthropicOptions = {}) {
    super({ ...gatewayOptions("/anthropic", options), authToken: null });
  }
}

export default LedgerAnthropic;
