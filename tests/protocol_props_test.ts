// Properties of every decoder of src/protocol.ts and src/version.ts: any
// input either decodes to what an encoder would have written or is a
// ProtocolError, never another exception.
import fc from "fast-check";
import { test } from "./support/harness.ts";
import { isTablerollError } from "../src/errors.ts";
import { assert, assertEquals } from "./support/assert.ts";
import {
  blobLength,
  checkSteppingDown,
  decodeMetadata,
  decodeReadyVersion,
  type DescriptorMeta,
  encodeMetadata,
  encodeReady,
  encodeSteppingDown,
  frame,
  MAX_BLOB_BYTES,
} from "../src/protocol.ts";
import { decodeVersionPrefix, encodeVersionPrefix } from "../src/version.ts";

/** Bounded so that the whole file runs in well under a second per runtime. */
const RUNS = { numRuns: 300 };

const WHITESPACE = [0x20, 0x09, 0x0d, 0x0a];
const text = (s: string) => new TextEncoder().encode(s);

/**
 * Bytes, often starting with a long run of whitespace (the version prefix's
 * alphabet): a pattern repeated to a length, so that shrinking stays cheap.
 */
const bytes = fc.tuple(
  fc.array(fc.constantFrom(...WHITESPACE), { maxLength: 8 }),
  fc.nat({ max: 1200 }),
  fc.uint8Array({ maxLength: 64 }),
).map(([pattern, length, rest]) =>
  new Uint8Array([
    ...Array.from({ length: pattern.length ? length : 0 }, (_, i) =>
      pattern[i % pattern.length]),
    ...rest,
  ])
);

/** JSON text of any value, possibly after a version prefix. */
const jsonBody = fc.tuple(fc.nat({ max: 20 }), fc.jsonValue()).map((
  [version, value],
) =>
  new Uint8Array([
    ...encodeVersionPrefix(version),
    ...text(JSON.stringify(value)),
  ])
);

const entry: fc.Arbitrary<DescriptorMeta> = fc.record({
  kind: fc.constantFrom("listener", "conn", "file"),
  id: fc.string({ unit: "grapheme", maxLength: 12 }),
  network: fc.constantFrom("", "tcp", "unix", "udp"),
  addr: fc.string({ maxLength: 30 }),
});

/** Runs `decode` and returns its result, or `undefined` if it threw a protocol error. */
function decodeOrRefuse<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch (err) {
    if (isTablerollError(err, "protocol")) return undefined;
    throw err;
  }
}

test("props: a version prefix round-trips and trailing zero digits do not change it", () => {
  fc.assert(
    fc.property(
      fc.maxSafeNat(),
      fc.nat({ max: 1500 }),
      (version, zeros) => {
        const blob = new Uint8Array([
          ...encodeVersionPrefix(version),
          ...new Uint8Array(zeros).fill(0x20),
          0x5b,
          0x5d,
        ]);
        const decoded = decodeVersionPrefix(blob);
        assertEquals(decoded.version, version);
        assertEquals(decoded.rest, text("[]"));
      },
    ),
    RUNS,
  );
});

test("props: any bytes split into a non-negative version and a rest without leading whitespace", () => {
  fc.assert(
    fc.property(bytes, (blob) => {
      const { version, rest } = decodeVersionPrefix(blob);
      assert(
        version >= 0 && (Number.isInteger(version) || version === Infinity),
        `version ${version} of ${blob.length} bytes`,
      );
      assert(!WHITESPACE.includes(rest[0]), "rest starts with whitespace");
      assertEquals(blob.subarray(blob.length - rest.length), rest);
    }),
    RUNS,
  );
});

test("props: metadata round-trips through its frame for any entries", () => {
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 8 }), (entries) => {
      const blob = encodeMetadata(entries);
      assertEquals(blobLength(blob.subarray(0, 4)), blob.length - 4);
      assertEquals(decodeMetadata(blob.subarray(4)), {
        version: 1,
        entries: entries.map((e) => ({ ...e })),
      });
    }),
    RUNS,
  );
});

test("props: truncated metadata is refused or, without only its newline, the same", () => {
  fc.assert(
    fc.property(
      fc.array(entry, { minLength: 1, maxLength: 4 }),
      fc.nat(),
      (entries, cut) => {
        const body = encodeMetadata(entries).subarray(4);
        const decoded = decodeOrRefuse(() =>
          decodeMetadata(body.subarray(0, cut % body.length))
        );
        if (decoded) assertEquals(cut % body.length, body.length - 1);
        if (decoded) {
          assertEquals(decoded.entries, entries.map((e) => ({ ...e })));
        }
      },
    ),
    RUNS,
  );
});

test("props: any bytes or JSON as metadata decode to well-formed entries or a protocol error", () => {
  fc.assert(
    fc.property(fc.oneof(bytes, jsonBody), (body) => {
      const decoded = decodeOrRefuse(() => decodeMetadata(body));
      for (const e of decoded?.entries ?? []) {
        assert(["listener", "conn", "file"].includes(e.kind), e.kind);
        assertEquals(typeof e.id, "string");
        assertEquals(typeof e.network, "string");
        assertEquals(typeof e.addr, "string");
      }
    }),
    RUNS,
  );
});

test("props: a ready blob yields its numeric version or a protocol error", () => {
  assertEquals(decodeReadyVersion(encodeReady().subarray(5)), 1);
  fc.assert(
    fc.property(fc.oneof(bytes, jsonBody), (body) => {
      const version = decodeOrRefuse(() => decodeReadyVersion(body));
      if (version !== undefined) assertEquals(typeof version, "number");
    }),
    RUNS,
  );
  fc.assert(
    fc.property(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      (version) => {
        assertEquals(
          decodeReadyVersion(text(JSON.stringify({ version }))),
          JSON.parse(JSON.stringify({ version })).version,
        );
      },
    ),
    RUNS,
  );
});

test('props: only {"msg":"stepping down"} passes as the owner\'s answer', () => {
  checkSteppingDown(encodeSteppingDown().subarray(4));
  fc.assert(
    fc.property(fc.oneof(bytes, jsonBody), (body) => {
      const passed = decodeOrRefuse(() => {
        checkSteppingDown(body);
        return true;
      });
      if (passed) {
        assertEquals(
          JSON.parse(new TextDecoder().decode(body)).msg,
          "stepping down",
        );
      }
    }),
    RUNS,
  );
});

test("props: any length prefix is 0..MAX_BLOB_BYTES or a protocol error, and frame() round-trips", () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (n) => {
      const header = new Uint8Array(4);
      new DataView(header.buffer).setInt32(0, n, false);
      const length = decodeOrRefuse(() => blobLength(header));
      assertEquals(length, n >= 0 && n <= MAX_BLOB_BYTES ? n : undefined);
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (body) => {
      const framed = frame(body);
      assertEquals(blobLength(framed.subarray(0, 4)), body.length);
      assertEquals(framed.subarray(4), body);
    }),
    RUNS,
  );
});
