/**
 * A flood on the control socket: 5,000 connections from a process of the
 * same user that does not hold the lock (this test), each refused. The
 * owner's memory stays within a generous bound (the figures are in
 * bench/README.md), its log holds one line for the first refusal and a
 * summary of the rest, it keeps serving, and a real successor still takes
 * over.
 */
import { join } from "node:path";
import process from "node:process";
import { runtime, scaled, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { ask } from "./fixtures/upgrader_peers.ts";
import { assertOwner, owning, withPlace } from "./fixtures/places.ts";
import { sleep } from "../testing/clock.ts";
import { connectAndHangUp } from "../testing/flood.ts";
import { rssKiB } from "../testing/memory.ts";

const CONNECTIONS = 5_000;

/**
 * How much the owner's RSS may grow. Whatever a process does, its first
 * busy second costs 6–10 MiB here (the runtime's optimizing compiler paged
 * in from its executable, and the code it makes); a Deno owner used to grow
 * by 160 MiB.
 */
const GROWTH_LIMIT_MIB = 40;

test(
  `control flood (${runtime}): 5,000 refused connections leave the owner's memory and log as they were; it serves, and a successor takes over`,
  () =>
    withPlace(async (place) => {
      const [first, port] = await owning(place);
      await sleep(500); // start-up's own allocations settle
      const before = rssKiB(first.pid);
      const flood = await connectAndHangUp(
        join(place.dir, `${first.pid}.sock`),
        CONNECTIONS,
        scaled(60_000),
      );
      await sleep(1000);
      const grownMiB = (rssKiB(first.pid) - before) / 1024;
      assert(
        grownMiB < GROWTH_LIMIT_MIB,
        `RSS grew by ${grownMiB.toFixed(1)} MiB over ${CONNECTIONS} refused ` +
          `connections (${flood.ms.toFixed(0)} ms)`,
      );
      assertEquals(await ask({ host: "127.0.0.1", port }), first.pid);

      const [next] = await owning(place);
      await first.gone();
      await assertOwner(place, next, port);
      // Logged in full once; the rest counted, and summarised at the latest
      // when the owner stopped.
      const refusals = first.child.output.split("\n").filter((line) =>
        /^\{"event":"log","level":"warn".*refused/.test(line)
      ).map((line) => JSON.parse(line).message as string);
      assert(
        refusals.length <= 3,
        `${refusals.length} lines for ${CONNECTIONS} refusals`,
      );
      assert(
        refusals[0].includes(`refused pid ${process.pid}: only the process`),
        refusals[0],
      );
      const summarised = refusals.slice(1).map((line) => {
        const counted = line.match(
          /refused (\d+) more connections? on the control socket .* from pid (\d+)$/,
        );
        assert(counted?.[2] === String(process.pid), line);
        return Number(counted[1]);
      });
      assertEquals(
        summarised.reduce((sum, n) => sum + n, 0),
        CONNECTIONS - 1,
        "refusals counted in the summaries",
      );
    }),
  { timeout: 120_000 },
);
