/**
 * Constants and struct layouts of Linux libc, written down once per
 * architecture. Everything that differs between x86_64 and aarch64 lives here;
 * the rest of `ffi/` reads offsets from {@linkcode layout} and never hard-codes
 * them.
 *
 * @module
 */
import { FfiError } from "./errors.ts";

/** The architectures whose layouts are written down. */
export type Arch = "x86_64" | "aarch64";

/** Offsets and sizes of the structs that the FFI layer reads and writes. */
export interface Layout {
  /** `struct epoll_event`: packed on x86_64 (12 bytes), naturally aligned on aarch64. */
  epollEvent: { size: number; events: number; data: number };
  /** `struct stat` as filled by `fstat`. */
  stat: { size: number; dev: number; ino: number; mode: number; uid: number };
  /** `O_DIRECTORY`, which differs between the two. */
  O_DIRECTORY: number;
  /** `O_NOFOLLOW` (do not follow a final symbolic link), which differs too. */
  O_NOFOLLOW: number;
}

const LAYOUTS: Record<Arch, Layout> = {
  x86_64: {
    epollEvent: { size: 12, events: 0, data: 4 },
    stat: { size: 144, dev: 0, ino: 8, mode: 24, uid: 28 },
    O_DIRECTORY: 0o200000,
    O_NOFOLLOW: 0o400000,
  },
  aarch64: {
    epollEvent: { size: 16, events: 0, data: 8 },
    stat: { size: 128, dev: 0, ino: 8, mode: 16, uid: 24 },
    O_DIRECTORY: 0o40000,
    O_NOFOLLOW: 0o100000,
  },
};

/** Thrown at load time on a platform whose layouts are not written down. */
export class UnsupportedPlatformError extends FfiError {
  static {
    this.prototype.name = "UnsupportedPlatformError";
  }

  /** Creates the error for the platform `os`/`arch`. */
  constructor(os: string, arch: string) {
    super(
      `tableroll's FFI layer supports Linux on x86_64 and aarch64 only, not ${os}/${arch}: ` +
        "descriptor passing and the struct layouts it needs are Linux-specific",
    );
  }
}

/** Returns the layout for `os`/`arch`, or throws {@linkcode UnsupportedPlatformError}. */
export function layoutFor(os: string, arch: string): Layout {
  if (os !== "linux" || !(arch in LAYOUTS)) {
    throw new UnsupportedPlatformError(os, arch);
  }
  return LAYOUTS[arch as Arch];
}

// Shared by every 64-bit Linux architecture.

/** `struct msghdr` (56 bytes). */
export const MSGHDR = {
  size: 56,
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
} as const;
/** `struct iovec` (16 bytes). */
export const IOVEC = { size: 16, base: 0, len: 8 } as const;
/** `struct cmsghdr` header; data starts at offset 16. */
export const CMSGHDR = { size: 16, len: 0, level: 8, type: 12 } as const;
/** `struct pollfd` (8 bytes). */
export const POLLFD = { size: 8, fd: 0, events: 4, revents: 6 } as const;
/** `struct timespec` (16 bytes). */
export const TIMESPEC = { size: 16, sec: 0, nsec: 8 } as const;
/** `struct ucred` (12 bytes). */
export const UCRED = { size: 12, pid: 0, uid: 4, gid: 8 } as const;
/** Size of `struct sockaddr_storage`, enough for any address. */
export const SOCKADDR_STORAGE_SIZE = 128;
/** Bytes of glibc's `posix_spawnattr_t` (336) and `posix_spawn_file_actions_t` (80), rounded up. */
export const SPAWN_STRUCT_SIZE = { attr: 512, fileActions: 128 } as const;
/** Bytes of the kernel-independent `sigset_t` of glibc. */
export const SIGSET_SIZE = 128;
/** `posix_spawnattr_setflags`: reset the signals of the default set to their default action. */
export const POSIX_SPAWN_SETSIGDEF = 0x04;
/** `posix_spawnattr_setflags`: set the signal mask. */
export const POSIX_SPAWN_SETSIGMASK = 0x08;
/** `posix_spawnattr_setflags`: the child starts a new session (`setsid`). */
export const POSIX_SPAWN_SETSID = 0x80;
/** `waitpid(2)`: return at once if no child has changed state. */
export const WNOHANG = 1;

/** Bytes of `sun_path` in `struct sockaddr_un`, including the terminating NUL. */
export const SUN_PATH_SIZE = 108;

/** Bytes of control-message space needed to carry `n` descriptors. */
export function cmsgSpace(n: number): number {
  return CMSGHDR.size + align8(4 * n);
}

/** `CMSG_LEN` for `n` descriptors: header plus data, unpadded. */
export function cmsgLen(n: number): number {
  return CMSGHDR.size + 4 * n;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

// Numeric constants of Linux (the same on x86_64 and aarch64).

/** Address family: Unix domain sockets. */
export const AF_UNIX = 1;
/** Address family: IPv4. */
export const AF_INET = 2;
/** Address family: IPv6. */
export const AF_INET6 = 10;
/** Socket type: byte stream (TCP, Unix stream). */
export const SOCK_STREAM = 1;
/** Socket type: datagrams (UDP, Unix datagram). */
export const SOCK_DGRAM = 2;
/** Socket type: ordered, record-preserving Unix socket. */
export const SOCK_SEQPACKET = 5;
/** `socket(2)` flag: open non-blocking. */
export const SOCK_NONBLOCK = 0o4000;
/** `socket(2)` flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** Option level of the socket itself. */
export const SOL_SOCKET = 1;
/** Socket option: allow binding a port in TIME_WAIT. */
export const SO_REUSEADDR = 2;
/** Socket option: the socket type (read-only). */
export const SO_TYPE = 3;
/** Socket option: credentials of a Unix socket's peer. */
export const SO_PEERCRED = 17;
/** Socket option: 1 if the socket is listening. */
export const SO_ACCEPTCONN = 30;
/** Socket option: the address family (read-only). */
export const SO_DOMAIN = 39;
/** Control message type carrying descriptors. */
export const SCM_RIGHTS = 1;
/** `recvmsg` flag: control data (descriptors) was truncated. */
export const MSG_CTRUNC = 0x8;
/** `recvmsg` flag: the data part was truncated. */
export const MSG_TRUNC = 0x20;
/** `sendmsg`/`recvmsg` flag: do not block. */
export const MSG_DONTWAIT = 0x40;
/** `sendmsg` flag: return `EPIPE` instead of raising SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** `recvmsg` flag: received descriptors are close-on-exec. */
export const MSG_CMSG_CLOEXEC = 0x40000000;
/** `shutdown(2)`: no more receptions. */
export const SHUT_RD = 0;
/** `shutdown(2)`: no more transmissions. */
export const SHUT_WR = 1;
/** `shutdown(2)`: neither. */
export const SHUT_RDWR = 2;

/** `open(2)`: read only. */
export const O_RDONLY = 0;
/** `open(2)`: write only. */
export const O_WRONLY = 1;
/** `open(2)`: read and write. */
export const O_RDWR = 2;
/** `open(2)`: create the file if missing. */
export const O_CREAT = 0o100;
/** `open(2)`: truncate to length 0. */
export const O_TRUNC = 0o1000;
/** `open(2)`/`fcntl(2)` status flag: non-blocking I/O. */
export const O_NONBLOCK = 0o4000;
/** `open(2)`: close on exec. */
export const O_CLOEXEC = 0o2000000;
/** `open(2)`: a descriptor that only names the file (enough for `fstat`), e.g. a socket file. */
export const O_PATH = 0o10000000;
/** `open(2)`/`fcntl(2)`: signal readiness (owner set by `F_SETOWN`, signal by `F_SETSIG`). */
export const O_ASYNC = 0o20000;

/** `fcntl(2)`: read the file status flags. */
export const F_GETFL = 3;
/** `fcntl(2)`: set the file status flags. */
export const F_SETFL = 4;
/** `fcntl(2)`: set the process that receives readiness signals for the open file description. */
export const F_SETOWN = 8;
/** `fcntl(2)`: the signal readiness raises instead of `SIGIO` (Linux). */
export const F_SETSIG = 10;
/** `SIGURG`, the same number on x86_64 and aarch64; ignored by default. */
export const SIGURG = 23;
/** `fcntl(2)`: duplicate to the lowest free number ≥ arg, close-on-exec. */
export const F_DUPFD_CLOEXEC = 1030;
/** `fcntl(2)`: set the descriptor flags. */
export const F_SETFD = 2;
/** Descriptor flag: close on exec. */
export const FD_CLOEXEC = 1;

/** `flock(2)`: shared lock. */
export const LOCK_SH = 1;
/** `flock(2)`: exclusive lock. */
export const LOCK_EX = 2;
/** `flock(2)`: fail with `EWOULDBLOCK` instead of waiting. */
export const LOCK_NB = 4;
/** `flock(2)`: unlock. */
export const LOCK_UN = 8;

/** `poll(2)` event: readable. */
export const POLLIN = 0x1;
/** `poll(2)` event: writable. */
export const POLLOUT = 0x4;
/** `poll(2)` event: hang-up (always reported). */
export const POLLHUP = 0x10;
/** `poll(2)` event: the descriptor is not open. */
export const POLLNVAL = 0x20;

/** `epoll_ctl(2)`: register a descriptor. */
export const EPOLL_CTL_ADD = 1;
/** `epoll_ctl(2)`: remove a registration. */
export const EPOLL_CTL_DEL = 2;
/** `epoll_ctl(2)`: change a registration's events and data. */
export const EPOLL_CTL_MOD = 3;
/** `epoll_event` event: readable (for a listener: a connection is pending). */
export const EPOLLIN = 0x1;
/** `epoll_create1(2)`: close on exec. */
export const EPOLL_CLOEXEC = 0o2000000;

/** `clock_gettime(2)`: the system-wide monotonic clock. */
export const CLOCK_MONOTONIC = 1;
/** `memfd_create(2)`: close on exec. */
export const MFD_CLOEXEC = 1;
/** `eventfd(2)`: close on exec. */
export const EFD_CLOEXEC = 0o2000000;
/** `eventfd(2)`: non-blocking. */
export const EFD_NONBLOCK = 0o4000;

/** `syscall(2)` number of `pidfd_open` (the same on x86_64 and aarch64). */
export const SYS_PIDFD_OPEN = 434;

/** `st_mode` mask of the file type bits. */
export const S_IFMT = 0o170000;
/** File type: socket. */
export const S_IFSOCK = 0o140000;
/** File type: regular file. */
export const S_IFREG = 0o100000;
/** File type: FIFO (pipe). */
export const S_IFIFO = 0o10000;
/** File type: directory. */
export const S_IFDIR = 0o40000;
