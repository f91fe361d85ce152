// Overview (and, filtered, a tenant's or user's page): spend KPIs, spend over time, top lists,
// requests, tokens by kind, error rate, unpriced and estimated counts.

import { api } from "../api";
import { spendChart, type Series } from "../chart";
import { count, h, section, table, usd } from "../dom";
import { apiQuery, link, params } from "../url";

interface Kpi {
  spend_usd: string;
  previous_usd: string;
  change_pct: string | null;
}

interface Row {
  requests: number;
  cost_usd: string;
  errors: number;
  unpriced: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  [key: string]: string | number | null;
}

export interface Overview {
  kpis: Record<"today" | "month_to_date" | "last_30_days", Kpi>;
  totals: Row & { estimated: number; error_rate: string };
  series: Series;
  top: Record<"tenant" | "user" | "feature" | "model", Row[]>;
}

function kpi(title: string, k: Kpi, key: string): HTMLElement {
  const change = k.change_pct;
  const arrow = change === null ? "" : Number(change) >= 0 ? `▲ ${change}%` : `▼ ${change.replace("-", "")}%`;
  return h(
    "div",
    { class: "kpi", "data-kpi": key },
    h("div", { class: "label" }, title),
    h("div", { class: "value", "data-value": k.spend_usd }, usd(k.spend_usd)),
    h(
      "div",
      { class: change === null ? "muted" : Number(change) >= 0 ? "up" : "down", title: `previous period: ${usd(k.previous_usd)}` },
      change === null ? "no spend in the previous period" : `${arrow} vs previous (${usd(k.previous_usd)})`,
    ),
  );
}

function topTable(key: "tenant" | "user" | "feature" | "model", rows: Row[]): HTMLElement {
  const body = rows.map((r) => {
    const name = r[key];
    const text = name === null || name === undefined ? "(none)" : String(name);
    const cell: Node | string =
      (key === "tenant" || key === "user") && name !== null ? h("a", { href: link("/tenant", { [key]: text }) }, text) : text;
    return [cell, usd(r.cost_usd), count(r.requests), count(r.errors)];
  });
  return section(`Top ${key}s`, table([key, "spend", "requests", "errors"], body));
}

export async function renderOverview(root: HTMLElement): Promise<Overview> {
  const q = apiQuery();
  const p = params();
  for (const k of ["stack", "bucket"]) {
    const v = p.get(k);
    if (v) q.set(k, v);
  }
  const data = await api<Overview>(`/api/v1/dashboard/overview?${q.toString()}`);
  const t = data.totals;
  root.append(
    h(
      "div",
      { class: "kpis" },
      kpi("Spend today", data.kpis.today, "today"),
      kpi("Month to date", data.kpis.month_to_date, "month_to_date"),
      kpi("Last 30 days", data.kpis.last_30_days, "last_30_days"),
      h(
        "div",
        { class: "kpi", "data-kpi": "range" },
        h("div", { class: "label" }, "Spend in range"),
        h("div", { class: "value", "data-value": t.cost_usd }, usd(t.cost_usd)),
        h("div", { class: "muted" }, `${count(t.requests)} requests`),
      ),
    ),
    section(`Spend per ${data.series.bucket}, by ${data.series.stack}`, spendChart(data.series)),
  );
  const unpricedLink = h("a", { href: link("/events", { unpriced: "true" }) }, count(t.unpriced));
  const estimatedLink = h("a", { href: link("/events", { estimated: "true" }) }, count(t.estimated));
  root.append(
    h(
      "div",
      { class: "grid" },
      section(
        "Requests and tokens",
        table(
          ["measure", "value"],
          [
            ["requests", count(t.requests)],
            ["errors", count(t.errors)],
            ["error rate", `${(Number(t.error_rate) * 100).toFixed(2)}%`],
            ["unpriced events", unpricedLink],
            ["estimated events", estimatedLink],
            ["input tokens", count(t.input_tokens)],
            ["cached input tokens", count(t.cache_read_tokens)],
            ["cache write tokens", count(t.cache_write_tokens)],
            ["output tokens", count(t.output_tokens)],
            ["reasoning tokens", count(t.reasoning_tokens)],
          ],
        ),
      ),
      topTable("tenant", data.top.tenant),
      topTable("user", data.top.user),
      topTable("feature", data.top.feature),
      topTable("model", data.top.model),
    ),
  );
  return data;
}
