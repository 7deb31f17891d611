/**
 * The bytes tableroll peers exchange over a control connection (protocol
 * version 1, as Go tableroll v2–v4 speak it). Pure encoding and decoding; the
 * I/O lives in `control_conn.ts`.
 *
 * @module
 */
import { decodeVersionPrefix, encodeVersionPrefix } from "./version.ts";
import { TablerollError } from "./errors.ts";

/** The protocol version this library speaks. */
export const PROTOCOL_VERSION = 1;

/** The byte a version-1 successor sends to announce it is ready. */
export const READY_BYTE = 0x42;
/** The byte a version-0 successor sends instead (and nothing after it). */
export const LEGACY_READY_BYTE = 0x2a;

/** Largest blob accepted from a peer; a longer length prefix is garbage. */
export const MAX_BLOB_BYTES = 64 * 1024 * 1024;

/**
 * Largest ready or stepping-down blob accepted: each is one short line of
 * JSON (Go's are 14 and 24 bytes); only the metadata can be long. Reading
 * one never makes room for, or waits for, a metadata-sized body.
 */
export const MAX_HANDSHAKE_BLOB_BYTES = 4096;

/** Largest data part of a descriptor message that Go's reader accepts. */
export const MAX_FD_MESSAGE_BYTES = 4096;

/** What a descriptor is, in the metadata. */
export type DescriptorKind = "listener" | "conn" | "file";

/** One entry of the metadata array. */
export interface DescriptorMeta {
  kind: DescriptorKind;
  id: string;
  network?: string;
  addr?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Go's `encoding/json` escapes these, and so do we, for identical bytes. */
function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

/** A length-prefixed blob: big-endian `int32` length, then `body`. */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setInt32(0, body.length, false);
  out.set(body, 4);
  return out;
}

function jsonLine(
  value: unknown,
  prefix: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const json = encoder.encode(goJson(value) + "\n");
  const body = new Uint8Array(prefix.length + json.length);
  body.set(prefix);
  body.set(json, prefix.length);
  return body;
}

/** The owner's metadata blob, framed, with the version prefix. */
export function encodeMetadata(entries: readonly DescriptorMeta[]): Uint8Array {
  const clean = entries.map(({ kind, id, network, addr }) => ({
    kind,
    id,
    ...(network ? { network } : {}),
    ...(addr ? { addr } : {}),
  }));
  return frame(jsonLine(clean, encodeVersionPrefix(PROTOCOL_VERSION)));
}

/** The decoded metadata blob. */
export interface Metadata {
  /** The version its prefix encodes (0 if none). */
  version: number;
  entries: DescriptorMeta[];
}

/** Decodes the body (without length) of the owner's metadata blob. */
export function decodeMetadata(body: Uint8Array): Metadata {
  const { version, rest } = decodeVersionPrefix(body);
  const value = parseJson(rest, "metadata");
  if (!Array.isArray(value)) {
    throw new TablerollError(
      "protocol",
      "metadata is not a JSON array of descriptors",
    );
  }
  const entries = value.map((item, i): DescriptorMeta => {
    const { kind, id, network, addr } = (item ?? {}) as Record<string, unknown>;
    if (kind !== "listener" && kind !== "conn" && kind !== "file") {
      throw new TablerollError(
        "protocol",
        `metadata entry ${i} has unknown kind ${JSON.stringify(kind)}`,
      );
    }
    if (typeof id !== "string") {
      throw new TablerollError(
        "protocol",
        `metadata entry ${i} has no string "id"`,
      );
    }
    return {
      kind,
      id,
      network: typeof network === "string" ? network : "",
      addr: typeof addr === "string" ? addr : "",
    };
  });
  return { version, entries };
}

/** The informational data part that travels with one descriptor. */
export function describeDescriptor(meta: DescriptorMeta): string {
  if (meta.kind === "file") return meta.id;
  return `${meta.kind}(${meta.id}): ${meta.network ?? ""}:${meta.addr ?? ""}`;
}

/** The successor's ready message: `0x42`, then the framed `{"version":1}`. */
export function encodeReady(): Uint8Array {
  const body = frame(jsonLine({ version: PROTOCOL_VERSION }));
  const out = new Uint8Array(1 + body.length);
  out[0] = READY_BYTE;
  out.set(body, 1);
  return out;
}

/** Decodes the body of the ready blob and returns the version it names. */
export function decodeReadyVersion(body: Uint8Array): number {
  const value = parseJson(body, "ready message") as
    | { version?: unknown }
    | null;
  if (typeof value?.version !== "number") {
    throw new TablerollError(
      "protocol",
      'ready message has no numeric "version"',
    );
  }
  return value.version;
}

/** The owner's framed answer to a ready message. */
export function encodeSteppingDown(): Uint8Array {
  return frame(jsonLine({ msg: "stepping down" }));
}

/** Checks the body of the owner's answer to a ready message. */
export function checkSteppingDown(body: Uint8Array): void {
  const value = parseJson(body, "owner's answer") as { msg?: unknown } | null;
  if (value?.msg !== "stepping down") {
    throw new TablerollError(
      "protocol",
      `owner answered ${
        JSON.stringify(value)
      } instead of {"msg":"stepping down"}`,
    );
  }
}

/** Reads the length prefix of a blob and rejects garbage: a length outside `0..max`. */
export function blobLength(header: Uint8Array, max = MAX_BLOB_BYTES): number {
  const length = new DataView(header.buffer, header.byteOffset, 4).getInt32(
    0,
    false,
  );
  if (length < 0 || length > max) {
    throw new TablerollError(
      "protocol",
      `blob length ${length} is outside 0..${max}: the peer does not speak the tableroll protocol`,
    );
  }
  return length;
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw new TablerollError(
      "protocol",
      `${what} is not valid JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
