// Live: new events and alerts appear without reloading. One request per refresh (every 5 s),
// never one per row; the answers overlap a little and events are kept once, by id.

import { api } from "../api";
import { clear, h, section, table } from "../dom";
import { eventRows, EVENT_HEAD } from "./events";
import { alertTable, type Alert } from "./limits";
import { apiQuery } from "../url";

interface LiveAnswer {
  events: Parameters<typeof eventRows>[0];
  alerts: Alert[];
  cursor: string;
}

let timer: number | undefined;

export function stopLive(): void {
  if (timer !== undefined) window.clearTimeout(timer);
  timer = undefined;
}

export async function renderLive(root: HTMLElement): Promise<void> {
  const seen = new Map<string, LiveAnswer["events"][number]>();
  const alerts = new Map<string, Alert>();
  const eventsBox = h("div", { "data-live": "events" });
  const alertsBox = h("div", { "data-live": "alerts" });
  const status = h("p", { class: "muted", "data-live": "status" }, "connecting…");
  const detailBox = h("div", {});
  root.append(status, section("Newest events", eventsBox), section("Alerts", alertsBox), detailBox);
  let cursor: string | null = null;
  const tick = async (): Promise<void> => {
    const q = apiQuery();
    q.delete("since");
    q.delete("until");
    if (cursor) q.set("after", cursor);
    try {
      const answer = await api<LiveAnswer>(`/api/v1/dashboard/live?${q.toString()}`);
      cursor = answer.cursor;
      for (const e of answer.events) seen.set(e.event_id, e);
      for (const a of answer.alerts) alerts.set(`${a.limit_id}|${a.subject}|${a.threshold}|${a.fired_at}`, a);
      const newest = [...seen.values()].sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1)).slice(0, 50);
      clear(eventsBox);
      eventsBox.append(table(EVENT_HEAD, eventRows(newest, detailBox)));
      clear(alertsBox);
      alertsBox.append(alertTable([...alerts.values()].sort((a, b) => (a.fired_at < b.fired_at ? 1 : -1))));
      status.textContent = `updated ${new Date().toLocaleTimeString()} · refreshes every 5 s`;
    } catch (e) {
      status.textContent = `refresh failed: ${(e as Error).message}`;
    }
    if (root.isConnected) timer = window.setTimeout(() => void tick(), 5000);
  };
  await tick();
}
