import { test } from "./support/harness.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import {
  close,
  POLLHUP,
  POLLIN,
  POLLOUT,
  read,
  setNonBlocking,
  socketPair,
  waitReadable,
  waitWritable,
  write,
  writeAll,
} from "../ffi/mod.ts";
import { SLOTS } from "../ffi/wait_table.ts";
import { Child, type Runtime } from "./fixtures/ffi_child.ts";
import { runtime } from "./support/harness.ts";

/** `promise`'s value, or `"pending"` if it has not settled after `ms`. */
function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | "pending"> {
  return Promise.race([
    promise,
    new Promise<"pending">((resolve) => setTimeout(resolve, ms, "pending")),
  ]);
}

test("ffi: waitReadable resolves when data arrives, not before", async () => {
  const [a, b] = socketPair();
  try {
    const wait = waitReadable(b);
    assertEquals(await settledWithin(wait, 100), "pending");
    writeAll(a, new Uint8Array([42]));
    assert((await wait) & POLLIN, "POLLIN reported");
    assertEquals(Array.from(read(b, 8)!), [42]);
    assert((await waitWritable(a)) !== 0);
  } finally {
    close(a);
    close(b);
  }
});

test("ffi: an aborted wait rejects with the reason and frees its slot", async () => {
  const [a, b] = socketPair();
  try {
    const reason = new Error("stop waiting");
    await assertRejects(
      waitReadable(b, { signal: AbortSignal.abort(reason) }),
      Error,
      "stop waiting",
    );

    // Fill every slot and cancel them all, twice: a slot that was not
    // freed would make the second round throw RangeError.
    for (let round = 0; round < 2; round++) {
      const controller = new AbortController();
      const waits = Array.from(
        { length: SLOTS },
        () =>
          waitReadable(b, { signal: controller.signal }).then(
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
    const wait = waitReadable(b);
    writeAll(a, new Uint8Array([1]));
    assert((await wait) & POLLIN);
  } finally {
    close(a);
    close(b);
  }
});

test("ffi: waitWritable resolves once a full socket buffer drains", async () => {
  const [a, b] = socketPair();
  try {
    setNonBlocking(a, true);
    const chunk = new Uint8Array(65536);
    while (write(a, chunk) !== null) {
      // Fill the buffer until the kernel refuses more.
    }
    const writable = waitWritable(a);
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
  mode: "ref" | "unref" | "exit",
): Promise<Child> {
  const child = new Child(r, "ffi_wait.ts", [mode]);
  assertEquals(await child.nextLine(), "waiting");
  return child;
}

test(`ffi: an unref'd wait does not keep a ${runtime} process alive`, async () => {
  const child = await waitingChild(runtime, "unref");
  try {
    const exit = await settledWithin(child.exited, 10_000);
    assertEquals(exit, { code: 0, signal: null }, "exited by itself");
  } finally {
    child.kill("SIGKILL");
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
    child.kill("SIGKILL");
  }
});

test(`ffi: process.exit ends a ${runtime} process whose waiter thread is in poll`, async () => {
  const child = await waitingChild(runtime, "exit");
  try {
    const exit = await settledWithin(child.exited, 10_000);
    assertEquals(exit, { code: 7, signal: null });
  } finally {
    child.kill("SIGKILL");
  }
});
