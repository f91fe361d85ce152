// The filter bar: range, attribution filters, and (on charts) stack and bucket. Changing one
// rewrites the URL (shareable), and the page redraws from it.

import { h } from "./dom";
import { FILTERS, params, update } from "./url";

const RANGES: [string, string][] = [
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["90d", "Last 90 days"],
  ["mtd", "Month to date"],
  ["ytd", "Year to date"],
];

function select(name: string, options: [string, string][], fallback: string, label: string): HTMLElement {
  const current = params().get(name) ?? fallback;
  const el = h(
    "select",
    { name, "data-filter": name, onchange: (e: Event) => update({ [name]: (e.target as HTMLSelectElement).value }) },
    ...options.map(([v, text]) => {
      const o = h("option", { value: v }, text);
      o.selected = v === current;
      return o;
    }),
  );
  return h("label", {}, label, el);
}

export function filterBar(opts: { chart?: boolean; fixed?: string[]; fields?: readonly string[] } = {}): HTMLElement {
  const p = params();
  const fields = (opts.fields ?? FILTERS).filter((f) => !(opts.fixed ?? []).includes(f));
  const inputs = fields.map((name) => {
    const input = h("input", { name, "data-filter": name, value: p.get(name) ?? "", placeholder: "any", size: 12 });
    input.addEventListener("change", () => update({ [name]: input.value.trim() }));
    return h("label", {}, name, input);
  });
  const range = select("since", RANGES, "30d", "range");
  const bar = h("div", { class: "filters" }, range, ...inputs);
  if (opts.chart) {
    bar.append(
      select(
        "stack",
        ["model", "provider", "tenant", "feature", "user"].map((s) => [s, s]),
        "model",
        "stack by",
      ),
      select(
        "bucket",
        [
          ["", "auto"],
          ["hour", "hour"],
          ["day", "day"],
          ["month", "month"],
        ],
        "",
        "bucket",
      ),
    );
  }
  return bar;
}
