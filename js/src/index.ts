/**
 * `@llmledger/sdk`: the official `openai` client, pointed at a self-hosted llmledger gateway
 * (`llmledger serve` or `llmledger proxy`), which meters, attributes and limits every call.
 * The Anthropic client is `LedgerAnthropic` from `@llmledger/sdk/anthropic`.
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

import { gatewayOptions, type LedgerOptions } from "./common.js";

export { DEFAULT_LEDGER_URL, LedgerConfigError, ledgerHeaders, type LedgerOptions } from "./common.js";

type BaseOptions = NonNullable<ConstructorParameters<typeof OpenAI>[0]>;

/** The options of `LedgerOpenAI`: the gateway's, then any `openai` client option but `apiKey`,
 * `baseURL` (set from them). */
export interface LedgerOpenAIOptions extends Omit<BaseOptions, "apiKey" | "baseURL">, LedgerOptions {}

/** `OpenAI` through the llmledger gateway: every method, type and error of the official client.
 * Throws `LedgerConfigError` for a missing ledger key or a malformed URL. */
export class LedgerOpenAI extends OpenAI {
  constructor(options: LedgerOpenAIOptions = {}) {
    super(gatewayOptions("/v1", options));
  }
}

export default LedgerOpenAI;
