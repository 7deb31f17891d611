/**
 * libc for Deno and Bun, behind one interface: sockets and socket addresses,
 * descriptor passing with `SCM_RIGHTS`, files, locks, epoll, `/proc/self`
 * and waiting for readiness without blocking the event loop.
 *
 * The backend is chosen at load time (`Deno.dlopen` or `bun:ffi`). Deno needs
 * `--allow-ffi`; code behind FFI is not bound by Deno's other permissions.
 * A failing call throws {@linkcode SyscallError} with the errno's name in
 * `code` (`"EADDRINUSE"`); Linux on x86_64 and aarch64 is supported.
 *
 * @example Pass a descriptor to another socket and get it back
 * ```ts
 * import { strictEqual } from "node:assert";
 * import {
 *   close,
 *   fileIdentity,
 *   pipe,
 *   receiveWithFds,
 *   sendWithFds,
 *   socketPair,
 * } from "./mod.ts";
 *
 * const [a, b] = socketPair();
 * const [readEnd, writeEnd] = pipe();
 * sendWithFds(a, new TextEncoder().encode("pipe"), [readEnd]);
 * const message = receiveWithFds(b, 16, 1)!;
 * strictEqual(new TextDecoder().decode(message.data), "pipe");
 * // A new number for the same pipe.
 * strictEqual(fileIdentity(message.fds[0]).ino, fileIdentity(readEnd).ino);
 * for (const fd of [a, b, readEnd, writeEnd, ...message.fds]) close(fd);
 * ```
 *
 * @example Wait for data without blocking the event loop
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { close, read, socketPair, waitReadable, writeAll } from "./mod.ts";
 *
 * const [a, b] = socketPair();
 * const ready = waitReadable(b);
 * writeAll(a, new Uint8Array([7]));
 * await ready;
 * strictEqual(read(b, 1)![0], 7);
 * close(a);
 * close(b);
 * ```
 *
 * @module
 */
export { layoutFor, UnsupportedPlatformError } from "./libc.ts";
export {
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLLIN,
  LOCK_EX,
  LOCK_NB,
  O_CREAT,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  SHUT_RD,
  SHUT_RDWR,
  SHUT_WR,
} from "./libc.ts";
export { Errno } from "./errors.ts";
export {
  FfiError,
  SyscallError,
  TruncatedMessageError,
  UnsupportedSyscallError,
} from "./errors.ts";
export { backend, layout, libc } from "./libc.ts";
export * from "./socket.ts";
export * from "./socket.ts";
export * from "./fdpass.ts";
export * from "./fd.ts";
export * from "./proc.ts";
export * from "./proc.ts";
export * from "./spawn.ts";
export * from "./runtime.ts";
export { monotonicNanos } from "./clock.ts";
export { delay, everyUnref, keepAlive } from "./wait.ts";
export {
  READINESS_SIGNAL,
  signalUntilClosed,
  waitFor,
  type WaitOptions,
  waitReadable,
  waitWritable,
} from "./wait.ts";
