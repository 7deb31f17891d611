import { runtime, test } from "./support/harness.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertThrows,
} from "./support/assert.ts";
import { spawn, spawnSync } from "node:child_process";
import process from "node:process";
import {
  close,
  dup,
  libc,
  pidfdOpen,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  read,
  setNonBlocking,
  socketPair,
  SyscallError,
  waitReadable,
  waitWritable,
  write,
  writeAll,
} from "../ffi/mod.ts";
import { Child, type Runtime } from "./fixtures/ffi_child.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";
import { straceCannotRun } from "./fixtures/faults.ts";

/** `promise`'s value, or `"pending"` if it has not settled after `ms`. */
async function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"pending">((resolve) => {
        timer = setTimeout(resolve, ms, "pending");
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `O_ASYNC`, to see whether a wait left it set. */
const O_ASYNC = 0o20000;
const F_GETFL = 3;

for (const exclusive of [true, false]) {
  const how = exclusive ? "the readiness signal" : "the sweep timer";
  test(`ffi: waitReadable resolves when data arrives, not before (${how})`, async () => {
    const [a, b] = socketPair();
    try {
      const wait = waitReadable(b, { exclusive });
      assertEquals(await settledWithin(wait, 100), "pending");
      assertEquals(
        (libc.fcntl(b, F_GETFL, 0) & O_ASYNC) !== 0,
        exclusive,
        "O_ASYNC set only for an exclusive wait",
      );
      writeAll(a, new Uint8Array([42]));
      assert((await wait) & POLLIN, "POLLIN reported");
      assertEquals(libc.fcntl(b, F_GETFL, 0) & O_ASYNC, 0, "O_ASYNC cleared");
      assertEquals(Array.from(read(b, 8)!), [42]);
      assert((await waitWritable(a, { exclusive })) !== 0);
    } finally {
      close(a);
      close(b);
    }
  });

  test(`ffi: 1,000 concurrent waits all resolve (${how})`, async () => {
    const pairs = Array.from({ length: 250 }, () => socketPair());
    try {
      const waits = pairs.flatMap(([, b]) =>
        Array.from({ length: 4 }, () => waitReadable(b, { exclusive }))
      );
      assertEquals(waits.length, 1000);
      assertEquals(await settledWithin(Promise.race(waits), 50), "pending");
      for (const [a] of pairs) writeAll(a, new Uint8Array([1]));
      const revents = await Promise.all(waits);
      assert(revents.every((r) => r & POLLIN), "every wait saw POLLIN");
    } finally {
      pairs.flat().forEach(close);
    }
  });

  test(`ffi: a descriptor closed while waited on resolves its waits (${how})`, async () => {
    const [a, b] = socketPair();
    try {
      const waits = [waitReadable(b, { exclusive }), waitWritable(b)];
      assertEquals(await settledWithin(waits[0], 50), "pending");
      close(b);
      const revents = await Promise.all(waits);
      assert(revents.some((r) => r & POLLNVAL), "POLLNVAL reported");
    } finally {
      close(a);
    }
  });
}

test("ffi: a wait on a descriptor closed by another path resolves with POLLNVAL", async () => {
  const [a, b] = socketPair();
  // Other test modules of this process run on threads and open descriptors:
  // the lowest free number, reused at once, would be a live file again. A
  // number far above them stays closed.
  const high = dup(b, 1000);
  close(b);
  try {
    const wait = waitReadable(high);
    libc.close(high);
    assertEquals(await settledWithin(wait, 2_000), POLLNVAL);
  } finally {
    close(a);
  }
});

test("ffi: waitReadable on a pidfd resolves when the process exits", async () => {
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const pidfd = pidfdOpen(child.pid!);
  try {
    // A pidfd raises no SIGIO, even when asked to: the timer sweeps it.
    const wait = waitReadable(pidfd, { exclusive: true });
    assertEquals(await settledWithin(wait, 200), "pending");
    child.kill("SIGKILL");
    assert((await settledWithin(wait, 2_000)) !== "pending", "resolved");
    assert((await wait) & POLLIN, "POLLIN reported");
  } finally {
    child.kill("SIGKILL");
    await exited;
    close(pidfd);
  }
});

test("ffi: pidfdOpen of a process that is gone throws ESRCH", async () => {
  const child = spawn("true", [], { stdio: "ignore" });
  await new Promise((resolve) => child.on("exit", resolve));
  const err = assertThrows(() => pidfdOpen(child.pid!), SyscallError);
  assertEquals(err.code, "ESRCH");
});

test(
  `ffi: pidfdOpen on a kernel without pidfd_open throws UnsupportedSyscallError (${runtime})`,
  () => {
    const script = `${ROOT}tests/fixtures/ffi_pidfd.ts`;
    const command = runtime === "deno"
      ? [runtimeBinary("deno"), "run", "-A", script]
      : [runtimeBinary("bun"), script];
    const run = (prefix: string[]) => {
      const [cmd, ...args] = [...prefix, ...command];
      const result = spawnSync(cmd, args, {
        encoding: "utf8",
        timeout: 60_000,
      });
      assertEquals(result.status, 0, result.stderr);
      return result.stdout.trim();
    };
    assertEquals(run([]), "opened");
    const enosys = ["strace", "-f", "-qq", "-o", "/dev/null"];
    enosys.push("-e", "inject=pidfd_open:error=ENOSYS");
    assertEquals(run(enosys), "UnsupportedSyscallError ENOSYS");
  },
  { skip: straceCannotRun() },
);

test(`ffi: the library's waits never raise SIGIO; the application's own SIGIO socket still does`, async () => {
  let heard = 0;
  const onSigio = () => heard++;
  const [a, b] = socketPair();
  const [c, d] = socketPair();
  addSigioListener(onSigio);
  try {
    // The application's own signal-driven socket.
    libc.fcntl(d, 8, process.pid);
    libc.fcntl(d, 4, libc.fcntl(d, F_GETFL, 0) | O_ASYNC);
    const wait = waitReadable(b, { exclusive: true });
    writeAll(a, new Uint8Array([1]));
    assert((await wait) & POLLIN);
    read(b, 1);
    // The library's socket raised its own signal, not SIGIO.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assertEquals(heard, 0, "SIGIO heard from the library's socket");

    // With no wait pending the library's socket can raise nothing more: its
    // O_ASYNC is cleared. The application's socket keeps its flag and
    // still raises SIGIO.
    assertEquals(libc.fcntl(b, F_GETFL, 0) & O_ASYNC, 0, "O_ASYNC cleared");
    assertEquals(libc.fcntl(d, F_GETFL, 0) & O_ASYNC, O_ASYNC);
    writeAll(c, new Uint8Array([3]));
    await until(() => heard > 0);
  } finally {
    // The application's socket first: a SIGIO nobody listens to would
    // end the process.
    [d, c, a, b].forEach(close);
    removeSigioListener(onSigio);
  }
});

test(`ffi: removing the library's signal listener leaves the application's heard (${runtime})`, async () => {
  const child = new Child(runtime, "ffi_signals.ts");
  try {
    assertEquals(await child.nextLine(), "heard 1");
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    await child.kill("SIGKILL");
  }
});

function addSigioListener(listener: () => void): void {
  if ("Deno" in globalThis) Deno.addSignalListener("SIGIO", listener);
  else process.on("SIGIO", listener);
}

function removeSigioListener(listener: () => void): void {
  if ("Deno" in globalThis) Deno.removeSignalListener("SIGIO", listener);
  else process.off("SIGIO", listener);
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i === 200) throw new Error("condition not met within 2 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("ffi: an aborted wait rejects with the reason and leaves nothing behind", async () => {
  const [a, b] = socketPair();
  try {
    const reason = new Error("stop waiting");
    await assertRejects(
      waitReadable(b, { signal: AbortSignal.abort(reason) }),
      Error,
      "stop waiting",
    );

    // Many waits of both kinds, cancelled at once: none settles twice,
    // and none is left behind to catch the next data.
    for (const exclusive of [true, false]) {
      const controller = new AbortController();
      const waits = Array.from(
        { length: 1000 },
        () =>
          waitReadable(b, { signal: controller.signal, exclusive }).then(
            () => "resolved",
            (err) => err,
          ),
      );
      controller.abort(reason);
      const outcomes = await Promise.all(waits);
      assert(
        outcomes.every((o) => o === reason),
        "every wait rejected with the reason",
      );
    }

    // The cancelled waits are gone: data goes to the one wait now pending.
    assertEquals(libc.fcntl(b, F_GETFL, 0) & O_ASYNC, 0, "O_ASYNC cleared");
    const wait = waitReadable(b);
    writeAll(a, new Uint8Array([1]));
    assert((await wait) & POLLIN);
  } finally {
    close(a);
    close(b);
  }
});

for (const exclusive of [true, false]) {
  test(`ffi: waitWritable resolves once a full socket buffer drains (exclusive: ${exclusive})`, async () => {
    const [a, b] = socketPair();
    try {
      setNonBlocking(a, true);
      const chunk = new Uint8Array(65536);
      while (write(a, chunk) !== null) {
        // Fill the buffer until the kernel refuses more.
      }
      const writable = waitWritable(a, { exclusive });
      assertEquals(await settledWithin(writable, 100), "pending");
      setNonBlocking(b, true);
      while (read(b, 65536) !== null) {
        // Drain what was written.
      }
      assert((await writable) & POLLOUT, "POLLOUT reported");
    } finally {
      close(a);
      close(b);
    }
  });
}

test("ffi: a hang-up resolves a pending wait", async () => {
  const [a, b] = socketPair();
  try {
    const wait = waitReadable(b);
    close(a);
    assert((await wait) & (POLLIN | POLLHUP), "POLLIN or POLLHUP reported");
    assertEquals(read(b, 8)!.length, 0, "end of stream");
  } finally {
    close(b);
  }
});

async function waitingChild(
  r: Runtime,
  mode: "ref" | "unref" | "unref-exclusive" | "exit" | "signal" | "write-space",
): Promise<Child> {
  const child = new Child(r, "ffi_wait.ts", [mode]);
  assertEquals(await child.nextLine(), "waiting");
  return child;
}

for (const mode of ["unref", "unref-exclusive"] as const) {
  test(`ffi: an unref'd wait does not keep a ${runtime} process alive (${mode})`, async () => {
    const child = await waitingChild(runtime, mode);
    try {
      const exit = await settledWithin(child.exited, 10_000);
      assertEquals(exit, { code: 0, signal: null }, "exited by itself");
    } finally {
      child.kill("SIGKILL");
    }
  });
}

test(`ffi: the readiness signal after the last wait ended, with or without a listener, does not kill a ${runtime} process`, async () => {
  const child = await waitingChild(runtime, "signal");
  try {
    assertEquals(await child.nextLine(), "alive");
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    await child.kill("SIGKILL");
  }
});

test(`ffi: on a socket kept signalling, space after a refused write raises the readiness signal in a ${runtime} process`, async () => {
  const child = await waitingChild(runtime, "write-space");
  try {
    const [, count] = (await child.nextLine()).split(" ");
    assert(Number(count) > 0, `${count} readiness signals received`);
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    await child.kill("SIGKILL");
  }
});

test(`ffi: a ref'd wait keeps a ${runtime} process alive until data comes`, async () => {
  const child = await waitingChild(runtime, "ref");
  try {
    assertEquals(await settledWithin(child.exited, 500), "pending");
    child.write("x");
    assertEquals(await child.nextLine(), "readable");
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    await child.kill("SIGKILL");
  }
});

test(`ffi: process.exit ends a ${runtime} process with a wait pending`, async () => {
  const child = await waitingChild(runtime, "exit");
  try {
    const exit = await settledWithin(child.exited, 10_000);
    assertEquals(exit, { code: 7, signal: null });
  } finally {
    await child.kill("SIGKILL");
  }
});
