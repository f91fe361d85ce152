// LedgerOpenAI and LedgerAnthropic against a real llmledger gateway process (`llmledger serve`) in
// front of the fake providers (tests/fakes/upstream.py) on loopback: usage and cost recorded,
// streams, attribution, upstream errors and limit refusals raised as the SDKs' own error classes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { LedgerOpenAI, LedgerConfigError, ledgerHeaders } from "../dist/index.js";
import { LedgerAnthropic } from "../dist/anthropic.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = process.env.LLMLEDGER_PYTHON ?? join(ROOT, ".venv", "bin", "python");
const ADMIN = "llk_00112233445566ff_js-test-admin-secret-0123456789";
const MESSAGES = [{ role: "user", content: "Hi" }];
const procs = [];
let gateway, upstream;

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitReady(url, proc) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${url}: the process exited with ${proc.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not start`);
}

function run(args, env = {}) {
  const proc = spawn(PYTHON, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
  procs.push(proc);
  return proc;
}

// The gateway writes its events in batches every 0.5 s (each call journaled first): wait at least one
// batch interval, then poll until `atLeast` events match `where` (10 s at most).
async function events(atLeast = 0, where = () => true) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await new Promise((r) => setTimeout(r, 600));
    const answer = await fetch(`${gateway}/api/v1/events?limit=100`, { headers: { Authorization: `Bearer ${ADMIN}` } });
    assert.equal(answer.status, 200);
    const found = (await answer.json()).events.reverse();
    if (found.filter(where).length >= atLeast || Date.now() > deadline) return found;
  }
}

before(async () => {
  const upPort = await freePort();
  upstream = `http://127.0.0.1:${upPort}`;
  const up = run(["-m", "tests.fakes.upstream", String(upPort)]);
  const dir = mkdtempSync(join(tmpdir(), "llmledger-js-"));
  const config = join(dir, "gateway.toml");
  writeFileSync(config, `[gateway]\nallow_upstreams = ["${upstream}"]\n[gateway.providers]\n"${upstream}/v1" = "openai"\n`);
  const port = await freePort();
  gateway = `http://127.0.0.1:${port}`;
  const main = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()";
  const gw = run(["-c", main, "serve", "--ledger", `sqlite:///${join(dir, "ledger.db")}`, "--port", String(port), "--config", config], { LLMLEDGER_ADMIN_KEY: ADMIN });
  await Promise.all([waitReady(gateway, gw), new Promise((r) => setTimeout(r, 300))]);
});

after(() => {
  for (const proc of procs) proc.kill("SIGTERM");
});

function client(extra = {}) {
  return new LedgerOpenAI({
    providerApiKey: "sk-provider-secret-js",
    providerApiBase: `${upstream}/v1`,
    ledgerKey: ADMIN,
    ledgerUrl: gateway,
    extraHeaders: { user: "u-1", plan: "pro", feature: "chat" },
    maxRetries: 0,
    ...extra,
  });
}

test("non-stream and stream calls are metered with cost and attribution", async () => {
  const c = client();
  assert.ok(c instanceof OpenAI);
  const { data, response } = await c.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES }).withResponse();
  assert.equal(data.model, "gpt-4o-mini-2024-07-18");
  const cost = response.headers.get("x-ledger-cost-usd");
  assert.ok(Number(cost) > 0);
  const stream = await c.chat.completions.create(
    { model: "gpt-4o-mini", messages: MESSAGES, stream: true },
    { headers: { user: "u-2" } },
  );
  let text = "";
  let usageChunks = 0;
  for await (const chunk of stream) {
    if (chunk.choices.length === 0) usageChunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, "Hello there, how can I help?");
  assert.equal(usageChunks, 0); // the usage chunk the gateway asked for is hidden
  const [first, second] = await events(2);
  assert.equal(first.cost_usd, cost);
  assert.deepEqual([first.user, first.feature, first.tags.plan], ["u-1", "chat", "pro"]);
  assert.deepEqual([second.user, second.stream, second.input_tokens, second.output_tokens], ["u-2", true, 1200, 300]);
});

test("upstream errors are the openai package's own error classes", async () => {
  const c = client();
  await assert.rejects(c.chat.completions.create({ model: "status-429", messages: MESSAGES }), OpenAI.RateLimitError);
  await assert.rejects(c.chat.completions.create({ model: "status-500", messages: MESSAGES }), OpenAI.InternalServerError);
  const badKey = new LedgerOpenAI({ ledgerKey: "llk_0000000000000000_nope-nope-nope-nope", ledgerUrl: gateway, maxRetries: 0 });
  await assert.rejects(badKey.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES }), OpenAI.AuthenticationError);
});

test("bad arguments are LedgerConfigErrors", () => {
  const saved = process.env.LLMLEDGER_API_KEY;
  delete process.env.LLMLEDGER_API_KEY;
  try {
    assert.throws(() => new LedgerOpenAI({ ledgerUrl: gateway }), LedgerConfigError);
    assert.throws(() => new LedgerOpenAI({ ledgerKey: ADMIN, ledgerUrl: "ftp://x" }), /ledgerUrl/);
    assert.throws(() => new LedgerOpenAI({ ledgerKey: ADMIN, providerApiBase: "api.openai.com" }), /providerApiBase/);
  } finally {
    if (saved !== undefined) process.env.LLMLEDGER_API_KEY = saved;
  }
  assert.deepEqual(ledgerHeaders({ user: "u", project: "p", "X-Custom": "c" }), {
    "X-Ledger-User": "u",
    "X-Ledger-Tag-project": "p",
    "X-Custom": "c",
  });
});

function anthropicClient(extra = {}) {
  return new LedgerAnthropic({
    providerApiKey: "sk-ant-provider-secret-js",
    providerApiBase: upstream,
    ledgerKey: ADMIN,
    ledgerUrl: gateway,
    extraHeaders: { user: "u-ant", project: "p-1" },
    maxRetries: 0,
    ...extra,
  });
}

test("LedgerAnthropic: non-stream and stream calls are metered with cost and attribution", async () => {
  const c = anthropicClient();
  assert.ok(c instanceof Anthropic);
  const { data, response } = await c.messages
    .create({ model: "claude-sonnet-5", max_tokens: 100, messages: MESSAGES })
    .withResponse();
  assert.equal(data.type, "message");
  const cost = response.headers.get("x-ledger-cost-usd");
  assert.ok(Number(cost) > 0);
  const stream = await c.messages.create({ model: "claude-sonnet-5", max_tokens: 100, messages: MESSAGES, stream: true });
  let text = "";
  for await (const event of stream) {
    if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
  }
  assert.ok(text.length > 0);
  const ours = (e) => e.user === "u-ant";
  const mine = (await events(2, ours)).filter(ours);
  assert.equal(mine.length, 2);
  assert.equal(mine[0].cost_usd, cost);
  assert.deepEqual([mine[0].provider, mine[0].tags.project, mine[1].stream], ["anthropic", "p-1", true]);
  assert.ok(mine[1].input_tokens > 0 && mine[1].output_tokens > 0);
});

test("a limit refusal is each SDK's own RateLimitError, naming the limit; nothing is metered", async () => {
  const made = await fetch(`${gateway}/api/v1/limits`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ usd: "0.000001", per: "day", scope: { tenant: "js-limited" } }),
  });
  assert.equal(made.status, 201, await made.clone().text());
  const limit = await made.json();
  const before = (await events()).length;
  const openai = client({ extraHeaders: { tenant: "js-limited" } });
  await assert.rejects(openai.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES }), (err) => {
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.match(err.message, new RegExp(`limit ${limit.id}`));
    assert.equal(err.headers.get("x-ledger-error"), "limit_exceeded");
    return true;
  });
  const anthropic = anthropicClient({ extraHeaders: { tenant: "js-limited" } });
  await assert.rejects(
    anthropic.messages.create({ model: "claude-sonnet-5", max_tokens: 100, messages: MESSAGES }),
    (err) => {
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      assert.match(err.message, new RegExp(`limit ${limit.id}`));
      return true;
    },
  );
  assert.equal((await events()).length, before);
});
