/**
 * Constants and struct layouts of Linux libc, written down once per
 * architecture. Everything that differs between x86_64 and aarch64 lives here;
 * the rest of `ffi/` reads offsets from {@linkcode layout} and never hard-codes
 * them.
 *
 * @module
 */

/** The architectures whose layouts are written down. */
export type Arch = "x86_64" | "aarch64";

/** Offsets and sizes of the structs that the FFI layer reads and writes. */
export interface Layout {
  /** `struct epoll_event`: packed on x86_64 (12 bytes), naturally aligned on aarch64. */
  epollEvent: { size: number; events: number; data: number };
  /** `struct stat` as filled by `fstat`. */
  stat: { size: number; dev: number; ino: number; mode: number };
  /** `O_DIRECTORY`, which differs between the two. */
  O_DIRECTORY: number;
}

const LAYOUTS: Record<Arch, Layout> = {
  x86_64: {
    epollEvent: { size: 12, events: 0, data: 4 },
    stat: { size: 144, dev: 0, ino: 8, mode: 24 },
    O_DIRECTORY: 0o200000,
  },
  aarch64: {
    epollEvent: { size: 16, events: 0, data: 8 },
    stat: { size: 128, dev: 0, ino: 8, mode: 16 },
    O_DIRECTORY: 0o40000,
  },
};

/** Thrown at load time on a platform whose layouts are not written down. */
export class UnsupportedPlatformError extends Error {
  constructor(os: string, arch: string) {
    super(
      `tableroll's FFI layer supports Linux on x86_64 and aarch64 only, not ${os}/${arch}: ` +
        "descriptor passing and the struct layouts it needs are Linux-specific",
    );
    this.name = "UnsupportedPlatformError";
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
/** `struct ucred` (12 bytes). */
export const UCRED = { size: 12, pid: 0, uid: 4, gid: 8 } as const;
/** Size of `struct sockaddr_storage`, enough for any address. */
export const SOCKADDR_STORAGE_SIZE = 128;
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

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_TYPE = 3;
export const SO_ERROR = 4;
export const SO_PEERCRED = 17;
export const SO_ACCEPTCONN = 30;
export const SO_DOMAIN = 39;
export const SCM_RIGHTS = 1;
export const MSG_CTRUNC = 0x8;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;
export const FD_CLOEXEC = 1;

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLL_CLOEXEC = 0o2000000;

export const MFD_CLOEXEC = 1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFREG = 0o100000;
export const S_IFIFO = 0o10000;
export const S_IFDIR = 0o40000;
