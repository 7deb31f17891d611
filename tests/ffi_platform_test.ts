import process from "node:process";
import { test } from "./support/harness.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";
import { layout, layoutFor, UnsupportedPlatformError } from "../ffi/mod.ts";

test("ffi: struct layouts per architecture, and none for other platforms", () => {
  assertEquals(layoutFor("linux", "aarch64").epollEvent, {
    size: 16,
    events: 0,
    data: 8,
  });
  assertEquals(layoutFor("linux", "x86_64").epollEvent, {
    size: 12,
    events: 0,
    data: 4,
  });
  for (
    const [os, arch] of [["linux", "riscv64"], ["darwin", "x86_64"], [
      "windows",
      "aarch64",
    ]]
  ) {
    const err = assertThrows(
      () => layoutFor(os, arch),
      UnsupportedPlatformError,
      `${os}/${arch}`,
    );
    assertEquals(err.name, "UnsupportedPlatformError");
  }
});

test("ffi: the running process uses its architecture's layout", () => {
  const arch = process.arch === "arm64" ? "aarch64" : "x86_64";
  assertEquals(layout(), layoutFor("linux", arch));
});
