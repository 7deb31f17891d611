/**
 * Plain-text tables in Markdown pipe syntax, readable in a terminal and
 * pasteable into the README as they are, and the numbers that go in them.
 *
 * @module
 */

/**
 * Formats `rows` under `header`. Columns whose every cell is a number (with
 * an optional unit, e.g. `12 ms` or `1.4×`) or a dash align right.
 */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length))
  );
  const numeric = header.map((_, i) =>
    rows.length > 0 &&
    rows.every((row) => /^[-+]?[\d.,]+\s*\S*$|^[-–]$/.test(row[i] ?? ""))
  );
  const line = (cells: string[]) =>
    `| ${
      cells.map((cell, i) =>
        numeric[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i])
      ).join(" | ")
    } |`;
  const rule = `|${
    widths.map((w, i) =>
      numeric[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2)
    )
      .join("|")
  }|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** `12,345` */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** `1.23 ms`, or `–` when there is nothing to show. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "–";
  return `${
    value < 10 ? value.toFixed(2) : value.toFixed(value < 100 ? 1 : 0)
  } ms`;
}

/** `12.3 MiB` for a size in KiB, or `–` when there is nothing to show. */
export function mib(kib: number): string {
  if (!Number.isFinite(kib)) return "–";
  return `${(kib / 1024).toFixed(1)} MiB`;
}

/**
 * A difference with its sign, its magnitude written by `format`
 * (`+1.2 MiB`, `−3.45 ms`), or `–` when there is nothing to show.
 */
export function difference(
  value: number,
  format: (magnitude: number) => string,
): string {
  if (!Number.isFinite(value)) return "–";
  return `${value < 0 ? "−" : "+"}${format(Math.abs(value))}`;
}

/** `1.25×`: `value` relative to `baseline`, or `–` when there is none. */
export function ratio(value: number, baseline: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline <= 0) {
    return "–";
  }
  return `${(value / baseline).toFixed(2)}×`;
}
