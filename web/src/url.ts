// Filters live in the URL: every page reads them from location.search and writes them back.

export const FILTERS = ["tenant", "user", "org", "feature", "agent", "model", "provider"] as const;

export function params(): URLSearchParams {
  return new URLSearchParams(location.search);
}

/** Navigate to the same page with `changes` applied (empty string or null removes a key). */
export function update(changes: Record<string, string | null>, path = location.pathname): void {
  const p = params();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === "") p.delete(k);
    else p.set(k, v);
  }
  p.delete("cursor");
  const query = p.toString();
  history.pushState(null, "", path + (query ? "?" + query : ""));
  window.dispatchEvent(new Event("llmledger:navigate"));
}

/** The query string the API takes for the page's filters and range (`since`, `until`). */
export function apiQuery(extra: string[] = []): URLSearchParams {
  const p = params();
  const out = new URLSearchParams();
  for (const k of [...FILTERS, "since", "until", ...extra]) {
    const v = p.get(k);
    if (v) out.set(k, v);
  }
  if (!out.has("since")) out.set("since", "30d");
  return out;
}

export function link(path: string, changes: Record<string, string>): string {
  const p = new URLSearchParams();
  const current = params();
  for (const k of ["since", "until"]) {
    const v = current.get(k);
    if (v) p.set(k, v);
  }
  for (const [k, v] of Object.entries(changes)) p.set(k, v);
  return path + "?" + p.toString();
}
