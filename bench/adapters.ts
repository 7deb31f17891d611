/**
 * Throughput of the native-server adapters against the plain native server,
 * measured by `bench/adapter_throughput.ts` when that script is present; its
 * own output (a table with its baseline) is passed through.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { commandLine, ROOT } from "../testing/copies.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { formatTable } from "../testing/table.ts";

const SCRIPT = "bench/adapter_throughput.ts";
const TIMEOUT_MS = 10 * 60_000;

/** Runs the adapter benchmark under Deno, or says that it is not available. */
export async function adapterThroughput(
  group: ProcessGroup,
  quick: boolean,
): Promise<string> {
  if (!existsSync(ROOT + SCRIPT)) {
    return formatTable(["adapter throughput", "result"], [[
      "Deno.serve and Bun.serve adapters",
      `not available (${SCRIPT} is missing)`,
    ]]);
  }
  const child = group.spawn(
    ...commandLine("deno", SCRIPT, quick ? ["--quick"] : []),
  );
  const exit = await Promise.race([
    child.exited,
    new Promise<null>((resolve) => setTimeout(() => resolve(null), TIMEOUT_MS)),
  ]);
  await group.close();
  const output = child.output.trimEnd();
  if (exit?.code === 0) return output;
  return `${output}\n\n${SCRIPT} failed (${
    exit ? `status ${exit.code ?? exit.signal}` : "timed out"
  }):\n${child.stderrTail}`;
}
