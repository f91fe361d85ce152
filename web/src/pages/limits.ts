// Limits: every limit with its utilisation per subject (each user of a user="*" limit), reset
// time, alert history; create, edit, top up and delete with an admin session.

import { api, ApiError, type Session } from "../api";
import { h, section, table, usd } from "../dom";

interface Status {
  limit_id: string;
  name: string | null;
  scope: Record<string, string>;
  subject: string;
  metric: string;
  window: string;
  spent: string;
  reserved: string;
  allowed: string;
  remaining: string;
  resets_at: string | null;
}

interface LimitDef {
  id: string;
  scope: Record<string, string>;
  metric: string;
  amount: string;
  window: { kind: string; seconds: number | null; tz: string };
  mode: string;
  name: string | null;
}

export interface Alert {
  limit_id: string;
  name: string | null;
  subject: string;
  threshold: string;
  fired_at: string;
}

function amount(metric: string, value: string): string {
  return metric === "usd" ? usd(value) : Number(value).toLocaleString("en-US");
}

function bar(s: Status): HTMLElement {
  const allowed = Number(s.allowed);
  const used = Number(s.spent) + Number(s.reserved);
  const share = allowed > 0 ? used / allowed : 0;
  const pct = Math.min(100, Math.round(share * 100));
  return h(
    "span",
    { title: `${amount(s.metric, s.spent)} spent + ${amount(s.metric, s.reserved)} reserved of ${amount(s.metric, s.allowed)}` },
    h("span", { class: share >= 1 ? "bar over" : "bar" }, h("span", { style: `width:${pct}%` })),
    ` ${(share * 100).toFixed(1)}%`,
  );
}

function resets(s: Status): string {
  if (!s.resets_at) return "never (lifetime)";
  // The server gives the reset in the limit's own time zone (its offset is in the string).
  return s.resets_at.replace("T", " ").slice(0, 19) + " " + s.resets_at.slice(19);
}

export function statusTable(statuses: Status[]): HTMLElement {
  if (!statuses.length) return h("p", { class: "muted" }, "No limits apply here.");
  return table(
    ["limit", "subject", "window", "used", "remaining", "resets", "utilisation"],
    statuses.map((s) => [
      s.name ?? s.limit_id,
      s.subject || Object.entries(s.scope).map(([k, v]) => `${k}=${v}`).join(" ") || "(everything)",
      s.window,
      amount(s.metric, s.spent),
      amount(s.metric, s.remaining),
      resets(s),
      bar(s),
    ]),
  );
}

export function alertTable(alerts: Alert[]): HTMLElement {
  if (!alerts.length) return h("p", { class: "muted" }, "No alerts in this period.");
  return table(
    ["fired", "limit", "subject", "threshold"],
    alerts.map((a) => [a.fired_at.replace("T", " ").slice(0, 19), a.name ?? a.limit_id, a.subject || "–", `${Number(a.threshold) * 100}%`]),
  );
}

function field(name: string, label: string, attrs: Record<string, string> = {}): HTMLElement {
  return h("label", {}, label, h("input", { name, ...attrs }));
}

function editor(onDone: () => void, error: HTMLElement, preset?: LimitDef): HTMLFormElement {
  const form = h(
    "form",
    { class: "inline", "data-form": "limit" },
    field("usd", "USD", { placeholder: "100", value: preset?.metric === "usd" ? preset.amount : "" }),
    field("per", "per", { value: preset ? preset.window.kind : "month", placeholder: "day, month, lifetime" }),
    field("tenant", "tenant", { value: preset?.scope["tenant"] ?? "", placeholder: "any" }),
    field("user", "user", { value: preset?.scope["user"] ?? "", placeholder: "any, or *" }),
    field("feature", "feature", { value: preset?.scope["feature"] ?? "", placeholder: "any" }),
    field("model", "model", { value: preset?.scope["model"] ?? "", placeholder: "any" }),
    field("name", "name", { value: preset?.name ?? "" }),
    h("button", { class: "primary", type: "submit" }, preset ? "Save" : "Create"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const text = (k: string): string => String(data.get(k) ?? "").trim();
    const scope: Record<string, string> = {};
    for (const k of ["tenant", "user", "feature", "model"]) if (text(k)) scope[k] = text(k);
    const body: Record<string, unknown> = { usd: text("usd"), per: text("per") || "month", scope };
    if (text("name")) body["name"] = text("name");
    api("/api/v1/limits", { method: "POST", body })
      .then(onDone)
      .catch((err: Error) => (error.textContent = err.message));
  });
  return form;
}

export async function renderLimits(root: HTMLElement, who: Session, filter: Record<string, string> = {}): Promise<void> {
  const q = new URLSearchParams(filter);
  try {
    await api<unknown>("/api/v1/limits/status?limit_id=-");
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      root.append(h("p", { class: "muted", "data-limits": "absent" }, "This server has no limits API (/api/v1/limits)."));
      return;
    }
  }
  const [defs, statuses, alerts] = await Promise.all([
    api<{ limits: LimitDef[] }>("/api/v1/limits"),
    api<{ statuses: Status[] }>(`/api/v1/limits/status?${q.toString()}`),
    api<{ alerts: Alert[] }>(`/api/v1/dashboard/alerts?since=30d&${q.toString()}`),
  ]);
  const error = h("p", { class: "error", role: "alert", "data-error": "limits" });
  const admin = who.scope === "admin";
  const redraw = (): void => {
    location.reload();
  };
  root.append(section("Utilisation", statusTable(statuses.statuses)));
  const rows = defs.limits.map((d) => {
    const actions = h("span", {});
    if (admin) {
      const topUp = h("input", { size: 6, placeholder: "amount", "aria-label": `top-up amount for ${d.id}` });
      actions.append(
        h("button", { "data-action": "delete", onclick: () => {
          if (!confirm(`Delete limit ${d.name ?? d.id}?`)) return;
          api(`/api/v1/limits/${encodeURIComponent(d.id)}`, { method: "DELETE" }).then(redraw).catch((err: Error) => (error.textContent = err.message));
        } }, "Delete"),
        " ",
        h("button", { "data-action": "edit", onclick: () => {
          root.append(section(`Edit ${d.name ?? d.id}`, editor(redraw, error, d)));
        } }, "Edit"),
      );
      if (d.window.kind === "lifetime") {
        actions.append(
          " ",
          topUp,
          h("button", { "data-action": "top-up", onclick: () => {
            api(`/api/v1/limits/${encodeURIComponent(d.id)}/top-up`, { method: "POST", body: { amount: topUp.value.trim() } })
              .then(redraw)
              .catch((err: Error) => (error.textContent = err.message));
          } }, "Top up"),
        );
      }
    }
    return [
      d.name ?? d.id,
      Object.entries(d.scope).map(([k, v]) => `${k}=${v}`).join(" ") || "(everything)",
      `${amount(d.metric, d.amount)} ${d.metric === "usd" ? "" : d.metric} per ${d.window.kind}`,
      d.window.tz,
      d.mode,
      actions,
    ];
  });
  root.append(section("Limits", table(["limit", "scope", "amount", "time zone", "mode", ""], rows), error));
  if (admin) root.append(section("New limit", editor(redraw, error)));
  else root.append(h("p", { class: "muted" }, "Changing limits needs an admin key."));
  root.append(section("Alerts (last 30 days)", alertTable(alerts.alerts)));
}
