/**
 * The version prefix of tableroll's metadata blob: the protocol version
 * written as JSON-insignificant whitespace, so that a version-0 reader, which
 * parses the blob as plain JSON, still understands it.
 *
 * Two bits per character, least significant first: `' '`=0, `'\t'`=1,
 * `'\r'`=2, `'\n'`=3. Each nibble, from the lowest, becomes two characters.
 *
 * @module
 */

const DIGITS = [0x20, 0x09, 0x0d, 0x0a] as const;

/**
 * The whitespace prefix for `version` (empty for 0).
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { encodeVersionPrefix } from "./version.ts";
 *
 * strictEqual(encodeVersionPrefix(1).join(), "9,32"); // "\t "
 * ```
 */
export function encodeVersionPrefix(version: number): Uint8Array {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new RangeError(
      `protocol version must be a non-negative integer, not ${version}`,
    );
  }
  const out: number[] = [];
  for (let v = version; v > 0; v = Math.floor(v / 16)) {
    const nibble = v % 16;
    out.push(DIGITS[nibble & 3], DIGITS[nibble >> 2]);
  }
  return new Uint8Array(out);
}

/**
 * Splits `blob` into the version its leading whitespace encodes and the rest.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { decodeVersionPrefix } from "./version.ts";
 *
 * const { version, rest } = decodeVersionPrefix(new TextEncoder().encode("\t []"));
 * deepStrictEqual([version, new TextDecoder().decode(rest)], [1, "[]"]);
 * ```
 */
export function decodeVersionPrefix(
  blob: Uint8Array,
): { version: number; rest: Uint8Array } {
  let version = 0;
  let scale = 1;
  let i = 0;
  for (; i < blob.length; i++) {
    const digit = DIGITS.indexOf(blob[i] as typeof DIGITS[number]);
    if (digit < 0) break;
    // Past 512 digits `scale` is Infinity, and 0 * Infinity would be NaN.
    if (digit > 0) version += digit * scale;
    scale *= 4;
  }
  return { version, rest: blob.subarray(i) };
}
