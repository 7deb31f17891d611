/**
 * The SVG timeline of a rolling upgrade: requests per second served by each
 * process, stacked, failures on top in red, and each handover shaded from the
 * new copy's start to the old copy's exit.
 *
 * @module
 */
import type { Runtime } from "./copies.ts";
import type { Interval, Timeline } from "./stats.ts";

/** A process in the legend. */
export interface Series {
  /** The pid in its responses. */
  pid: number;
  /** What ran it. */
  runtime: Runtime;
}

/** A handover to mark on the timeline. */
export interface Mark extends Interval {
  /** 1-based number of the upgrade. */
  index: number;
}

const WIDTH = 900;
const HEIGHT = 360;
const PAD = { left: 60, right: 170, top: 30, bottom: 40 };
const COLORS = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#b07aa1",
  "#76b7b2",
  "#edc948",
  "#9c755f",
  "#bab0ac",
];
const FAILED = "#e15759";

/** Renders `data` (bucketed from `data.start`) with `marks` as an SVG document. */
export function renderTimeline(
  data: Timeline,
  series: readonly Series[],
  marks: readonly Mark[],
  title: string,
): string {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const perSecond = 1000 / data.bucketMs;
  const stacks = data.failed.map(() => 0);
  const layers = [
    ...series.map((s, i) => ({
      counts: data.served.get(s.pid) ?? [],
      color: COLORS[i % COLORS.length],
      label: `pid ${s.pid} (${s.runtime})`,
    })),
    { counts: data.failed, color: FAILED, label: "failed" },
  ];
  const peak = Math.max(
    1,
    ...data.failed.map((failed, i) =>
      layers.slice(0, -1).reduce((sum, l) => sum + (l.counts[i] ?? 0), failed)
    ),
  ) * perSecond;
  const yMax = niceCeiling(peak);
  const x = (bucket: number) => PAD.left + (bucket / data.buckets) * plotW;
  const xAt = (ms: number) => x((ms - data.start) / data.bucketMs);
  const y = (rate: number) => PAD.top + plotH - (rate / yMax) * plotH;

  const parts: string[] = [];
  // Handover bands and marks go over the areas so that they stay visible.
  const overlay: string[] = [];
  for (const mark of marks) {
    const x0 = xAt(mark.start), x1 = Math.max(xAt(mark.end), x0 + 1);
    overlay.push(
      `<rect x="${f(x0)}" y="${PAD.top}" width="${
        f(x1 - x0)
      }" height="${plotH}" fill="#000" fill-opacity="0.12"/>`,
      `<line x1="${f(x0)}" x2="${f(x0)}" y1="${PAD.top}" y2="${
        PAD.top + plotH
      }" stroke="#333" stroke-dasharray="4 3"/>`,
      `<text x="${f(x0 + 3)}" y="${
        PAD.top + 12
      }" font-size="11">#${mark.index}</text>`,
    );
  }
  for (const layer of layers) {
    const top: string[] = [];
    const bottom: string[] = [];
    for (let i = 0; i < data.buckets; i++) {
      const base = stacks[i];
      stacks[i] += (layer.counts[i] ?? 0) * perSecond;
      for (const edge of [x(i), x(i + 1)]) {
        top.push(`${f(edge)},${f(y(stacks[i]))}`);
        bottom.unshift(`${f(edge)},${f(y(base))}`);
      }
    }
    if (layer.counts.some((n) => n > 0)) {
      parts.push(
        `<polygon points="${
          [...top, ...bottom].join(" ")
        }" fill="${layer.color}" fill-opacity="0.85"/>`,
      );
    }
  }
  parts.push(...overlay, ...axes(data, yMax, x, y));
  layers.forEach((layer, i) => {
    const ly = PAD.top + 10 + i * 18;
    parts.push(
      `<rect x="${WIDTH - PAD.right + 15}" y="${
        ly - 9
      }" width="12" height="12" fill="${layer.color}"/>`,
      `<text x="${WIDTH - PAD.right + 32}" y="${ly + 1}" font-size="12">${
        escape(layer.label)
      }</text>`,
    );
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${PAD.left}" y="18" font-size="14" font-weight="bold">${
      escape(title)
    }</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

function axes(
  data: Timeline,
  yMax: number,
  x: (bucket: number) => number,
  y: (rate: number) => number,
): string[] {
  const bottom = y(0);
  const seconds = (data.buckets * data.bucketMs) / 1000;
  const step = niceCeiling(seconds / 10);
  const out = [
    `<line x1="${x(0)}" x2="${f(x(data.buckets))}" y1="${f(bottom)}" y2="${
      f(bottom)
    }" stroke="#000"/>`,
    `<line x1="${x(0)}" x2="${x(0)}" y1="${f(y(yMax))}" y2="${
      f(bottom)
    }" stroke="#000"/>`,
    `<text x="${f(x(data.buckets))}" y="${
      f(bottom + 32)
    }" font-size="11" text-anchor="end">time (s)</text>`,
    `<text x="12" y="${
      f(y(yMax / 2))
    }" font-size="11" transform="rotate(-90 12 ${
      f(y(yMax / 2))
    })" text-anchor="middle">requests/s</text>`,
  ];
  for (let s = 0; s <= seconds; s += step) {
    const tx = x((s * 1000) / data.bucketMs);
    out.push(
      `<text x="${f(tx)}" y="${
        f(bottom + 15)
      }" font-size="11" text-anchor="middle">${s}</text>`,
    );
  }
  for (const rate of [0, yMax / 2, yMax]) {
    out.push(
      `<text x="${PAD.left - 6}" y="${
        f(y(rate) + 4)
      }" font-size="11" text-anchor="end">${Math.round(rate)}</text>`,
    );
  }
  return out;
}

/** The smallest of 1, 2, 5 × 10^k that is at least `value`. */
export function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value)!;
}

function f(n: number): string {
  return n.toFixed(1);
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(
    />/g,
    "&gt;",
  );
}
