/**
 * Plain-text helpers shared by the commands' human-readable output.
 *
 * @module
 */

/** `340 ms`, `12.3 s`, `4 min 05 s`, `3 h 02 min`, `2 d 04 h`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const pad = (n: number) => String(Math.floor(n)).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${pad((s % 86400) / 3600)} h`;
}

/** Lines of cells, each column padded to its widest cell. */
export function table(rows: string[][], indent = ""): string[] {
  const widths = rows.reduce<number[]>(
    (w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)),
    [],
  );
  return rows.map((row) =>
    indent + row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()
  );
}
