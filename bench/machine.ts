/**
 * What a benchmark ran on: runtime versions, CPU count and model, kernel.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import process from "node:process";
import { REFERENCE_ENV, runtimeBinary } from "../testing/copies.ts";

/** One line per fact, ready to print above the tables. */
export function describeMachine(): string[] {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(
    readFileSync("/proc/cpuinfo", "utf8"),
  )?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  const version = (runtime: "deno" | "bun") =>
    execFileSync(runtimeBinary(runtime), ["--version"], { encoding: "utf8" })
      .split("\n")[0].trim();
  const reference = process.env[REFERENCE_ENV];
  return [
    `date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
    `runtimes: ${version("deno")}; bun ${version("bun")}; driver: ${driver()}`,
    `machine: ${os.cpus().length} CPUs (nproc), ${cpu}, ${os.type()} ${os.release()} ${os.arch()}`,
    `load average at the start: ${
      os.loadavg().map((l) => l.toFixed(2)).join(", ")
    } (1, 5, 15 min)`,
    ...(reference ? [`reference implementation: ${reference}`] : []),
  ];
}

function driver(): string {
  const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
  return deno
    ? `deno ${deno.version.deno}`
    : `${process.release.name} ${process.version}`;
}
