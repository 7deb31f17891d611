import { test } from "./support/harness.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  checkSteppingDown,
  decodeMetadata,
  decodeReadyVersion,
  describeDescriptor,
  encodeMetadata,
  encodeReady,
  encodeSteppingDown,
} from "../src/protocol.ts";
import { decodeVersionPrefix, encodeVersionPrefix } from "../src/version.ts";

/** Bytes from the hex dumps in PROTOCOL.md. */
function hex(text: string): Uint8Array {
  return new Uint8Array(text.trim().split(/\s+/).map((b) => parseInt(b, 16)));
}

const text = (s: string) => new TextEncoder().encode(s);

test("protocol: metadata for one TCP listener matches the captured Go bytes", () => {
  const golden = hex(`
    00 00 00 4c  09 20 5b 7b 22 6b 69 6e 64 22 3a 22 6c 69 73 74
    65 6e 65 72 22 2c 22 69 64 22 3a 22 77 65 62 22 2c 22 6e 65
    74 77 6f 72 6b 22 3a 22 74 63 70 22 2c 22 61 64 64 72 22 3a
    22 31 32 37 2e 30 2e 30 2e 31 3a 31 38 30 38 30 22 7d 5d 0a`);
  const meta = {
    kind: "listener",
    id: "web",
    network: "tcp",
    addr: "127.0.0.1:18080",
  } as const;
  assertEquals(encodeMetadata([meta]), golden);
  assertEquals(describeDescriptor(meta), "listener(web): tcp:127.0.0.1:18080");
  assertEquals(decodeMetadata(golden.subarray(4)), {
    version: 1,
    entries: [meta],
  });
});

test("protocol: an empty store and a file entry encode as Go v4.0.0 does", () => {
  assertEquals(encodeMetadata([]), hex("00 00 00 05 09 20 5b 5d 0a"));
  const file = { kind: "file", id: "journal", network: "", addr: "" } as const;
  assertEquals(
    encodeMetadata([file]).subarray(6),
    text('[{"kind":"file","id":"journal"}]\n'),
  );
  assertEquals(describeDescriptor(file), "journal");
});

test("protocol: v2.0.0 entries with empty network and addr, unknown fields and any order decode", () => {
  const body = text(
    '\t [{"kind":"file","id":"journal","network":"","addr":"","extra":1},' +
      '{"addr":"/run/s.sock","network":"unix","id":"api","kind":"listener"}]\n',
  );
  assertEquals(decodeMetadata(body).entries, [
    { kind: "file", id: "journal", network: "", addr: "" },
    { kind: "listener", id: "api", network: "unix", addr: "/run/s.sock" },
  ]);
});

test("protocol: names are escaped like Go's encoding/json", () => {
  const blob = encodeMetadata([{ kind: "file", id: "<a&b>" }]);
  assertEquals(
    new TextDecoder().decode(blob.subarray(6)),
    '[{"kind":"file","id":"\\u003ca\\u0026b\\u003e"}]\n',
  );
  assertEquals(decodeMetadata(blob.subarray(4)).entries[0].id, "<a&b>");
});

test("protocol: ready and stepping-down messages match the golden bytes", () => {
  assertEquals(
    encodeReady(),
    hex("42 00 00 00 0e 7b 22 76 65 72 73 69 6f 6e 22 3a 31 7d 0a"),
  );
  assertEquals(decodeReadyVersion(encodeReady().subarray(5)), 1);
  const steppingDown = encodeSteppingDown();
  assertEquals(steppingDown.subarray(0, 4), hex("00 00 00 18"));
  assertEquals(steppingDown.subarray(4), text('{"msg":"stepping down"}\n'));
  checkSteppingDown(steppingDown.subarray(4));
});

test("protocol: version prefixes match the table and round-trip for 0..9999", () => {
  const table: [number, string][] = [
    [0, ""],
    [1, "09 20"],
    [2, "0d 20"],
    [3, "0a 20"],
    [4, "20 09"],
    [
      16,
      "20 20 09 20",
    ],
  ];
  for (const [version, bytes] of table) {
    assertEquals(
      encodeVersionPrefix(version),
      bytes ? hex(bytes) : new Uint8Array(0),
      `version ${version}`,
    );
  }
  for (let version = 0; version <= 9999; version++) {
    const blob = new Uint8Array([...encodeVersionPrefix(version), 0x5b, 0x5d]);
    const decoded = decodeVersionPrefix(blob);
    if (decoded.version !== version || decoded.rest.length !== 2) {
      throw new Error(`version ${version} decoded as ${decoded.version}`);
    }
  }
});

test("protocol: garbage is a protocol error that says what was wrong", () => {
  assertThrows(
    () => decodeMetadata(text("\t not json")),
    "protocol",
    "not valid JSON",
  );
  assertThrows(
    () => decodeMetadata(text('{"kind":"file"}')),
    "protocol",
    "not a JSON array",
  );
  assertThrows(
    () => decodeMetadata(text('[{"kind":"socket","id":"x"}]')),
    "protocol",
    "unknown kind",
  );
  assertThrows(
    () => decodeMetadata(text('[{"kind":"file"}]')),
    "protocol",
    '"id"',
  );
  assertThrows(
    () => decodeMetadata(new Uint8Array([0xff, 0xfe])),
    "protocol",
  );
  assertThrows(
    () => decodeReadyVersion(text('{"ver":1}')),
    "protocol",
    "version",
  );
  assertThrows(
    () => checkSteppingDown(text('{"msg":"no"}')),
    "protocol",
    "stepping down",
  );
});
