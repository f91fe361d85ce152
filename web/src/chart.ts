// Charts with Chart.js (a maintained library; tree-shaken to the parts used). Every chart also has
// its numbers in a table right under it (hover shows them too).

import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";

import { h, table, usd } from "./dom";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip, Legend);

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"];

export interface Series {
  bucket: string;
  stack: string;
  labels: string[];
  stacks: { name: string; cost_usd: string[] }[];
  requests: number[];
}

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

const live = new Set<Chart>();

/** Destroy the charts of the previous page (a page change redraws everything). */
export function dropCharts(): void {
  for (const c of live) c.destroy();
  live.clear();
}

/** A stacked bar chart of spend per bucket, and its numbers as a table (in a <details>). */
export function spendChart(series: Series): HTMLElement {
  const canvas = h("canvas", { role: "img", "aria-label": `spend per ${series.bucket} by ${series.stack}` });
  const box = h("div", { class: "chart" }, canvas);
  const config: ChartConfiguration<"bar"> = {
    type: "bar",
    data: {
      labels: series.labels,
      datasets: series.stacks.map((s, i) => ({
        label: s.name,
        data: s.cost_usd.map(Number),
        backgroundColor: PALETTE[i % PALETTE.length] ?? "#888",
        stack: "spend",
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: {
        legend: { labels: { color: css("--fg") } },
        tooltip: {
          callbacks: {
            label: (item) => `${item.dataset.label ?? ""}: ${usd(String(item.raw))}`,
          },
        },
      },
      scales: {
        x: { stacked: true, ticks: { color: css("--muted"), maxRotation: 0, autoSkip: true }, grid: { display: false } },
        y: { stacked: true, ticks: { color: css("--muted"), callback: (v) => usd(String(v)) }, grid: { color: css("--grid") } },
      },
    },
  };
  requestAnimationFrame(() => live.add(new Chart(canvas, config)));
  const rows = series.labels.map((label, i) => [
    label,
    ...series.stacks.map((s) => usd(s.cost_usd[i])),
    String(series.requests[i] ?? 0),
  ]);
  const numbers = h(
    "details",
    { class: "numbers" },
    h("summary", {}, "Numbers"),
    table([series.bucket, ...series.stacks.map((s) => s.name), "requests"], rows),
  );
  return h("div", {}, box, numbers);
}
