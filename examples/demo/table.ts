/**
 * Plain-text tables in Markdown pipe syntax: readable in a terminal and
 * pasteable into the README as they are.
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
