// Events explorer: filter by any field and tag, a time range, keyset pages (never OFFSET), an
// event's full record, and a CSV export of exactly what the filters show.

import { api } from "../api";
import { clear, count, h, section, table, usd } from "../dom";
import { filterBar } from "../filters";
import { params, update } from "../url";

export const EVENT_FILTERS = [
  "tenant", "user", "org", "feature", "agent", "session", "model", "provider", "status", "endpoint", "tag", "unpriced", "estimated",
] as const;

interface EventRecord {
  event_id: string;
  timestamp: string;
  provider: string;
  model: string;
  tenant: string | null;
  user: string | null;
  feature: string | null;
  status: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: string | null;
  estimated: boolean;
  [key: string]: unknown;
}

export function eventsQuery(): URLSearchParams {
  const p = params();
  const q = new URLSearchParams();
  for (const k of [...EVENT_FILTERS, "since", "until"]) {
    const v = p.get(k);
    if (v) q.set(k, v);
  }
  if (!q.has("since")) q.set("since", "30d");
  return q;
}

async function detail(box: HTMLElement, id: string): Promise<void> {
  const event = await api<Record<string, unknown>>(`/api/v1/dashboard/events/${encodeURIComponent(id)}`);
  clear(box);
  box.append(section(`Event ${id}`, h("pre", { class: "detail", "data-detail": id }, JSON.stringify(event, null, 2))));
  box.scrollIntoView({ block: "nearest" });
}

export function eventRows(events: EventRecord[], box: HTMLElement): (Node | string)[][] {
  return events.map((e) => [
    h("a", { href: "#", "data-event": e.event_id, onclick: (ev: Event) => { ev.preventDefault(); void detail(box, e.event_id); } }, e.timestamp.replace("T", " ").slice(0, 19)),
    e.tenant ?? "–",
    e.user ?? "–",
    e.feature ?? "–",
    e.model,
    e.status,
    count(e.input_tokens),
    count(e.output_tokens),
    e.cost_usd === null ? "unpriced" : usd(e.cost_usd) + (e.estimated ? " (est.)" : ""),
  ]);
}

export const EVENT_HEAD = ["time (UTC)", "tenant", "user", "feature", "model", "status", "input", "output", "cost"];

export async function renderEvents(root: HTMLElement): Promise<void> {
  root.append(filterBar({ fields: EVENT_FILTERS }));
  const q = eventsQuery();
  const cursor = params().get("cursor");
  if (cursor) q.set("cursor", cursor);
  q.set("limit", "50");
  const page = await api<{ events: EventRecord[]; next_cursor: string | null }>(`/api/v1/dashboard/events?${q.toString()}`);
  const box = h("div", {});
  const csv = eventsQuery();
  const nav = h(
    "p",
    {},
    h("a", { href: `/api/v1/dashboard/events.csv?${csv.toString()}`, download: "events.csv", "data-csv": "1" }, "Export CSV (everything the filters match)"),
    " ",
    cursor ? h("button", { onclick: () => update({ cursor: null }) }, "First page") : null,
    " ",
    page.next_cursor
      ? h("button", { "data-action": "next", onclick: () => {
          const p = params();
          p.set("cursor", page.next_cursor ?? "");
          history.pushState(null, "", location.pathname + "?" + p.toString());
          window.dispatchEvent(new Event("llmledger:navigate"));
        } }, "Next page")
      : h("span", { class: "muted" }, "last page"),
  );
  root.append(section(`Events (${page.events.length} on this page)`, nav, table(EVENT_HEAD, eventRows(page.events, box))), box);
}
