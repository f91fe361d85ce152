// Prices: look up a model's price and where it comes from; the models seen without a price.

import { api } from "../api";
import { count, h, section, table } from "../dom";
import { link, params, update } from "../url";

interface Price {
  provider: string | null;
  model: string;
  matched?: string;
  source?: string;
  origin?: string;
  prices?: { key: string; value: string }[];
  multiplier?: string;
  error?: string;
}

export async function renderPrices(root: HTMLElement): Promise<void> {
  const p = params();
  const q = new URLSearchParams();
  for (const k of ["model", "provider"]) {
    const v = p.get(k);
    if (v) q.set(k, v);
  }
  const data = await api<{ price: Price | null; unpriced_models: { provider: string; model: string; events: number }[] }>(
    `/api/v1/dashboard/prices?${q.toString()}`,
  );
  const model = h("input", { name: "model", value: p.get("model") ?? "", placeholder: "gpt-4o-mini" });
  const provider = h("input", { name: "provider", value: p.get("provider") ?? "", placeholder: "openai (optional)" });
  const form = h("form", { class: "inline" }, h("label", {}, "model", model), h("label", {}, "provider", provider), h("button", { class: "primary", type: "submit" }, "Look up"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    update({ model: model.value.trim(), provider: provider.value.trim() });
  });
  const found = data.price;
  let result: HTMLElement = h("p", { class: "muted" }, "Name a model to see its price.");
  if (found?.error) result = h("p", { class: "error", "data-price": "none" }, found.error);
  else if (found) {
    result = h(
      "div",
      { "data-price": found.matched ?? "" },
      h("p", {}, `${found.provider ?? ""} ${found.model} → ${found.matched ?? ""}; source: ${found.source ?? ""} (${found.origin ?? ""})`),
      table(["price", "USD"], (found.prices ?? []).map((l) => [l.key, l.value])),
      found.multiplier && found.multiplier !== "1" ? h("p", {}, `multiplier ×${found.multiplier}`) : null,
    );
  }
  root.append(section("Price lookup", form, result));
  const rows = data.unpriced_models.map((m) => [m.provider, h("a", { href: link("/events", { model: m.model, unpriced: "true", since: "ytd" }) }, m.model), count(m.events)]);
  root.append(
    section(
      "Models seen without a price",
      rows.length ? table(["provider", "model", "unpriced events"], rows) : h("p", { class: "muted" }, "Every event has a price."),
    ),
  );
}
