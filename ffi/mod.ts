/**
 * libc for Deno and Bun, behind one interface: sockets and socket addresses,
 * descriptor passing with `SCM_RIGHTS`, files, locks, epoll, `/proc/self`
 * and waiting for readiness without blocking the event loop.
 *
 * The backend is chosen at load time (`Deno.dlopen` or `bun:ffi`). Deno needs
 * `--allow-ffi`; code behind FFI is not bound by Deno's other permissions.
 *
 * @example Pass a descriptor to another socket and get it back
 * ```ts
 * import { close, receiveWithFds, sendWithFds, socketPair, pipe } from "./mod.ts";
 *
 * const [a, b] = socketPair();
 * const [readEnd, writeEnd] = pipe();
 * sendWithFds(a, new TextEncoder().encode("pipe"), [readEnd]);
 * const message = receiveWithFds(b, 16, 1)!;
 * console.assert(message.fds.length === 1);
 * for (const fd of [a, b, readEnd, writeEnd, ...message.fds]) close(fd);
 * ```
 *
 * @module
 */
export * from "./platform.ts";
export { Errno, errnoName } from "./errno.ts";
export { SyscallError, TruncatedMessageError } from "./errors.ts";
export { backend, cString, layout, libc } from "./libc.ts";
export * from "./sockaddr.ts";
export * from "./socket.ts";
export * from "./fdpass.ts";
export * from "./fd.ts";
export * from "./proc.ts";
export {
  waitFor,
  type WaitOptions,
  waitReadable,
  waitWritable,
} from "./wait.ts";
