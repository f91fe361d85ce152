// The dashboard: one small bundle, one page per path, filters in the URL, no CDN.

import "./style.css";

import { api, session, type Session } from "./api";
import { dropCharts } from "./chart";
import { clear, h, section } from "./dom";
import { filterBar } from "./filters";
import { renderEvents } from "./pages/events";
import { renderLimits, statusTable, alertTable, type Alert } from "./pages/limits";
import { renderLive, stopLive } from "./pages/live";
import { renderOverview } from "./pages/overview";
import { renderPrices } from "./pages/prices";
import { params } from "./url";

const PAGES: [string, string][] = [
  ["/", "Overview"],
  ["/limits", "Limits"],
  ["/events", "Events"],
  ["/prices", "Prices"],
  ["/live", "Live"],
];

function nav(who: Session | null): void {
  const el = document.getElementById("nav");
  const whoEl = document.getElementById("who");
  if (!el || !whoEl) return;
  clear(el);
  clear(whoEl);
  if (!who) return;
  for (const [path, title] of PAGES) {
    const here = location.pathname === path || (path === "/" && location.pathname === "/tenant");
    const keep = new URLSearchParams();
    const since = params().get("since");
    if (since) keep.set("since", since);
    el.append(h("a", { href: path + (keep.size ? "?" + keep.toString() : ""), class: here ? "here" : undefined }, title));
  }
  whoEl.append(
    `${who.scope}${who.tenant ? ` · tenant ${who.tenant}` : ""} `,
    h("button", { onclick: () => void api("/logout", { method: "POST" }).then(() => location.assign("/login")) }, "Log out"),
  );
}

function loginPage(root: HTMLElement): void {
  const p = params();
  const note = p.has("expired")
    ? "That login link was already used or has expired: ask `llmledger serve` for a new one, or use a key."
    : p.has("failed")
      ? "That key is not valid (or cannot read)."
      : "Open the link `llmledger serve` printed, or paste an API key (read scope to view, admin to change limits).";
  const form = h(
    "form",
    { method: "post", action: "/login", class: "inline" },
    h("label", {}, "API key", h("input", { name: "key", type: "password", autocomplete: "off", size: 48, required: true })),
    h("button", { class: "primary", type: "submit" }, "Log in"),
  );
  root.append(section("Log in", h("p", { class: p.has("expired") || p.has("failed") ? "error" : "muted" }, note), form));
}

async function tenantPage(root: HTMLElement, who: Session): Promise<void> {
  const p = params();
  const tenant = p.get("tenant") ?? who.tenant ?? "";
  const user = p.get("user") ?? "";
  root.append(h("h1", {}, user ? `User ${user}${tenant ? ` (tenant ${tenant})` : ""}` : `Tenant ${tenant}`));
  root.append(filterBar({ chart: true, fixed: ["tenant", "user"] }));
  await renderOverview(root);
  const q = new URLSearchParams();
  if (tenant) q.set("tenant", tenant);
  if (user) q.set("user", user);
  const [statuses, alerts] = await Promise.all([
    api<{ statuses: Parameters<typeof statusTable>[0] }>(`/api/v1/limits/status?${q.toString()}`).catch(() => ({ statuses: [] })),
    api<{ alerts: Alert[] }>(`/api/v1/dashboard/alerts?since=30d&${q.toString()}`),
  ]);
  root.append(section("Limits", statusTable(statuses.statuses)), section("Recent alerts", alertTable(alerts.alerts)));
}

let who: Session | null = null;

async function render(): Promise<void> {
  stopLive();
  dropCharts();
  const root = document.getElementById("app");
  if (!root) return;
  clear(root);
  const path = location.pathname;
  if (path === "/login") {
    nav(null);
    loginPage(root);
    return;
  }
  who = who ?? (await session());
  if (!who) {
    location.assign("/login");
    return;
  }
  nav(who);
  document.body.dataset["page"] = path;
  document.body.dataset["ready"] = "0";
  try {
    if (path === "/tenant") await tenantPage(root, who);
    else if (path === "/limits") await renderLimits(root, who);
    else if (path === "/events") await renderEvents(root);
    else if (path === "/prices") await renderPrices(root);
    else if (path === "/live") await renderLive(root);
    else {
      root.append(filterBar({ chart: true }));
      await renderOverview(root);
    }
  } catch (e) {
    root.append(h("p", { class: "error", role: "alert" }, (e as Error).message));
  }
  document.body.dataset["ready"] = "1";
}

window.addEventListener("popstate", () => void render());
window.addEventListener("llmledger:navigate", () => void render());
void render();
