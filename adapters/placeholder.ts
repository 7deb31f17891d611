/**
 * The throw-away listener a native server is asked to create before the real
 * socket is adopted in its place: same family, so the runtime's accept code
 * decodes peer addresses the way the adopted socket returns them.
 *
 * @module
 */
import type { SocketAddress } from "../ffi/mod.ts";

/** Where the runtime should listen: loopback port 0, or a Unix path. */
export type PlaceholderAddress =
  | { hostname: string; port: 0 }
  | { path: string };

/** A placeholder address and the cleanup of what it left on disk. */
export interface Placeholder {
  /** Pass this to the runtime's serve call. */
  readonly address: PlaceholderAddress;
  /** Removes the placeholder's Unix socket file, if any; never throws. */
  dispose(): void;
}

/**
 * A placeholder of the same family as `real`.
 *
 * @example
 * ```ts ignore
 * const placeholder = placeholderFor({ family: "inet", hostname: "0.0.0.0", port: 80 });
 * placeholder.address; // { hostname: "127.0.0.1", port: 0 }
 * ```
 */
export function placeholderFor(real: SocketAddress): Placeholder {
  if (real.family === "inet") {
    return { address: { hostname: "127.0.0.1", port: 0 }, dispose() {} };
  }
  if (real.family === "inet6") {
    return { address: { hostname: "::1", port: 0 }, dispose() {} };
  }
  const dir = tempDirectory("tableroll-placeholder-");
  return {
    address: { path: `${dir.path}/listener.sock` },
    dispose() {
      try {
        dir.remove();
      } catch {
        // Out of descriptors, say: an empty directory left in the temporary
        // one does less harm than an error that loses the server just made.
      }
    },
  };
}

/**
 * A new private directory under the system's temporary one. Without `node:`
 * imports: on Deno they would load the Node compatibility layer.
 */
function tempDirectory(prefix: string): { path: string; remove(): void } {
  if ("Deno" in globalThis) {
    const path = Deno.makeTempDirSync({ prefix });
    return { path, remove: () => Deno.removeSync(path, { recursive: true }) };
  }
  // Bun's node:fs is built in and cheap.
  const { process } = globalThis as unknown as {
    process: {
      env: Record<string, string | undefined>;
      getBuiltinModule?(name: "node:fs"): NodeFs;
    };
  };
  // getBuiltinModule came with Bun 1.2.8; import.meta.require is older.
  const fs = process.getBuiltinModule?.("node:fs") ??
    (import.meta as unknown as { require(name: "node:fs"): NodeFs }).require(
      "node:fs",
    );
  const path = fs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/${prefix}`);
  return {
    path,
    remove: () => fs.rmSync(path, { recursive: true, force: true }),
  };
}

interface NodeFs {
  mkdtempSync(prefix: string): string;
  rmSync(path: string, options: { recursive: boolean; force: boolean }): void;
}
