import { test } from "./support/harness.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  close,
  listenOn,
  localAddress,
  socketInfo,
  SyscallError,
} from "../ffi/mod.ts";

test("ffi: binding a used port raises EADDRINUSE", () => {
  const fd = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  try {
    const addr = localAddress(fd);
    assertEquals(socketInfo(fd), {
      family: "inet",
      type: "stream",
      listening: true,
    });
    const err = assertThrows(() => listenOn(addr), SyscallError);
    assertEquals([err.syscall, err.code, err.errno], [
      "bind",
      "EADDRINUSE",
      98,
    ]);
  } finally {
    close(fd);
  }
});
