/**
 * One family of errors: every error class the library exports, from every
 * entry point, extends TablerollError and names itself.
 */
import { test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { close, encodeSockaddr, listenOn, localAddress } from "../ffi/mod.ts";
import * as core from "../mod.ts";
import * as deno from "../adapters/deno/mod.ts";
import * as bun from "../adapters/bun/mod.ts";
import * as serve from "../adapters/serve/mod.ts";

test("errors: every exported error class is a TablerollError", () => {
  const classes = Object.entries({ ...core, ...deno, ...bun, ...serve })
    .filter(([name]) => name.endsWith("Error"));
  const names = classes.map(([name]) => name);
  for (
    const name of [
      "TablerollError",
      "SyscallError",
      "UnsupportedSyscallError",
      "InvalidAddressError",
      "TruncatedMessageError",
      "UnsupportedPlatformError",
      "ClaimedTooLateError",
      "AdoptionError",
    ]
  ) {
    assert(names.includes(name), `${name} is exported`);
  }
  for (const [name, errorClass] of classes) {
    assert(
      errorClass === core.TablerollError ||
        errorClass.prototype instanceof core.TablerollError,
      `${name} extends TablerollError`,
    );
  }
});

test("errors: a failing libc call and a bad address raise members of the family", () => {
  const taken = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  try {
    const err = assertThrows(
      () => listenOn(localAddress(taken)),
      core.TablerollError,
      "EADDRINUSE",
    );
    assertEquals([err.name, (err as core.SyscallError).code], [
      "SyscallError",
      "EADDRINUSE",
    ]);
    const bad = assertThrows(
      () => encodeSockaddr({ family: "inet", hostname: "1.2.3", port: 1 }),
      core.TablerollError,
    );
    assertEquals(bad.name, "InvalidAddressError");
  } finally {
    close(taken);
  }
});
