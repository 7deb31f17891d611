import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import {
  accept,
  close,
  connect,
  dup3,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLLIN,
  type EpollRegistration,
  epollRegistrations,
  fileIdentity,
  layout,
  libc,
  listenOn,
  localAddress,
  openSocket,
  waitReadable,
} from "../ffi/mod.ts";
import { currentRuntime, testedRange } from "../adapters/tested_runtimes.ts";
import {
  adoptListener,
  listenerOpenedBy,
  serveAdopted,
} from "../adapters/adopt.ts";
import { TablerollError } from "../mod.ts";

/** `fn`'s error, which must be a `TablerollError` (`adoption`) containing `text`. */
function adoptionRefused(fn: () => unknown, text: string): TablerollError {
  const err = assertThrows(fn, TablerollError, text);
  assertEquals(err.code, "adoption");
  return err;
}

const loopback = { family: "inet", hostname: "127.0.0.1", port: 0 } as const;

interface NativeServer {
  port: number;
  stop(): Promise<unknown>;
}

/** The running runtime's native server on `address`, answering its pid. */
function nativeServe(
  address: { hostname: string; port: number },
): NativeServer {
  const body = () => new Response(`hello from ${runtime}`);
  const g = globalThis as {
    Bun?: {
      serve(o: object): { port: number; stop(force: boolean): Promise<void> };
    };
  };
  if (g.Bun) {
    const server = g.Bun.serve({ ...address, fetch: body });
    return { port: server.port, stop: () => server.stop(true) };
  }
  const server = Deno.serve({ ...address, handler: body, onListen() {} });
  return { port: server.addr.port, stop: () => server.shutdown() };
}

/** A loopback listener that does not block, as the runtimes make theirs. */
function runtimeLikeListener(): number {
  return listenOn(loopback, { nonblocking: true });
}

function registerWith(
  epollFd: number,
  fd: number,
  data: bigint,
  events = EPOLLIN,
  op = EPOLL_CTL_ADD,
): void {
  const event = new Uint8Array(layout().epollEvent.size);
  const view = new DataView(event.buffer);
  view.setUint32(layout().epollEvent.events, events, true);
  view.setBigUint64(layout().epollEvent.data, data, true);
  libc.epoll_ctl(epollFd, op, fd, event);
}

test(`adopt: ${runtime}'s native server serves on an adopted socket`, async () => {
  const source = listenOn(loopback);
  const { server, listener } = serveAdopted(
    { fd: source, address: localAddress(source) },
    (placeholder) => nativeServe(placeholder as typeof loopback),
    (server) => server.stop(),
  );
  try {
    const real = localAddress(source);
    assertEquals(listener.address, real);
    assert(real.family === "inet" && real.port !== server.port);
    const answers = await Promise.all(
      Array.from(
        { length: 20 },
        () => fetch(`http://127.0.0.1:${real.port}/`).then((r) => r.text()),
      ),
    );
    assertEquals(new Set(answers), new Set([`hello from ${runtime}`]));
    const registered = epollRegistrations().filter((r) =>
      r.targetFd === listener.fd
    );
    assert(
      registered.length > 0,
      "the adopted socket is in the runtime's epoll",
    );
    listener.stopAccepting();
    assertEquals(
      epollRegistrations().filter((r) => r.targetFd === listener.fd),
      [],
    );
  } finally {
    await server.stop();
    close(source);
  }
});

test(`adopt: a failed adoption stops ${runtime}'s native server`, async () => {
  const source = listenOn({ family: "inet6", hostname: "::1", port: 0 });
  let stopped: NativeServer | undefined;
  try {
    adoptionRefused(
      () =>
        serveAdopted(
          // Claims IPv4, so the placeholder's family differs from the socket's.
          { fd: source, address: loopback },
          (placeholder) => nativeServe(placeholder as typeof loopback),
          (server) => {
            stopped = server;
            return server.stop();
          },
        ),
      "the socket to adopt is inet6",
    );
    assert(stopped, "the server was stopped");
    await stopped.stop();
    const refused = await fetch(`http://127.0.0.1:${stopped.port}/`).then(
      () => false,
      () => true,
    );
    assert(refused, "nothing listens on the placeholder any more");
  } finally {
    close(source);
  }
});

test("adopt: a listener that no epoll watches is refused", () => {
  const placeholder = runtimeLikeListener();
  const source = listenOn(loopback);
  try {
    const err = adoptionRefused(
      () => adoptListener(placeholder, source),
      "no epoll instance watches",
    );
    assert(err.message.includes("tableroll/node"), "names the fallback");
    const { name, version } = currentRuntime()!;
    assert(
      err.message.includes(`${name === "deno" ? "Deno" : "Bun"} ${version}`),
      `names the runtime: ${err.message}`,
    );
  } finally {
    close(placeholder);
    close(source);
  }
});

test("adopt: a listener with two different registrations is refused", () => {
  const placeholder = runtimeLikeListener();
  const source = listenOn(loopback);
  const epolls = [
    libc.epoll_create1(EPOLL_CLOEXEC),
    libc.epoll_create1(EPOLL_CLOEXEC),
  ];
  try {
    const before = fileIdentity(placeholder);
    registerWith(epolls[0], placeholder, 1n);
    registerWith(epolls[1], placeholder, 2n);
    adoptionRefused(
      () => adoptListener(placeholder, source),
      "2 different epoll registrations",
    );
    assertEquals(
      fileIdentity(placeholder),
      before,
      "the placeholder was left alone",
    );
  } finally {
    for (const fd of [placeholder, source, ...epolls]) close(fd);
  }
});

test("adopt: a socket of another family is refused", () => {
  const placeholder = runtimeLikeListener();
  const source = listenOn({ family: "inet6", hostname: "::1", port: 0 });
  try {
    adoptionRefused(
      () => adoptListener(placeholder, source),
      "inet socket, the socket to adopt is inet6",
    );
  } finally {
    close(placeholder);
    close(source);
  }
});

test("adopt: a server that opened no listener is refused, and stopped", () => {
  const stopped: string[] = [];
  adoptionRefused(
    () => listenerOpenedBy(() => "server", (s) => stopped.push(s)),
    "opened 0",
  );
  assertEquals(stopped, ["server"]);
});

test("adopt: stopAccepting leaves alone a socket that took the adopted number", () => {
  const placeholder = runtimeLikeListener();
  const source = listenOn(loopback);
  const epoll = libc.epoll_create1(EPOLL_CLOEXEC);
  const other = listenOn(loopback);
  try {
    registerWith(epoll, placeholder, 7n);
    const adopted = adoptListener(placeholder, source);
    // The runtime closed its listener and the number went to another socket,
    // which the same epoll now watches.
    dup3(other, placeholder);
    registerWith(epoll, placeholder, 8n);
    adopted.stopAccepting();
    const { ino } = fileIdentity(other);
    const watched = epollRegistrations().filter((r) =>
      r.epollFd === epoll && r.targetFd === placeholder && r.ino === ino
    );
    assertEquals(watched.map((r) => r.data), [8n]);
  } finally {
    for (const fd of [placeholder, source, epoll, other]) close(fd);
  }
});

test("adopt: a blocking listener is refused", () => {
  const placeholder = listenOn(loopback);
  const source = listenOn(loopback);
  try {
    adoptionRefused(
      () => adoptListener(placeholder, source),
      "is blocking",
    );
  } finally {
    close(placeholder);
    close(source);
  }
});

/**
 * Adopts a fresh loopback socket into this runtime's native server after
 * `alter` changed the server's real state (its listener's descriptor and
 * epoll registration as found); expects a `TablerollError` (`adoption`)
 * containing `expected`, the server stopped, and the socket's connections
 * left to the socket's owner: the runtime accepted none.
 */
async function refusedAfter(
  alter: (fd: number, registration: EpollRegistration) => void,
  expected: string,
): Promise<void> {
  const source = listenOn(loopback);
  const address = localAddress(source);
  const { ino } = fileIdentity(source);
  let stopped: NativeServer | undefined;
  let watching: EpollRegistration[] | undefined;
  try {
    const err = adoptionRefused(
      () =>
        serveAdopted(
          { fd: source, address },
          (placeholder) => {
            const { value, fd } = listenerOpenedBy(() =>
              nativeServe(placeholder as typeof loopback)
            );
            const [registration] = epollRegistrations().filter((r) =>
              r.targetFd === fd
            );
            alter(fd, registration);
            return value;
          },
          (server) => {
            // Before the runtime runs again: it could accept on what its
            // epoll watches.
            watching = epollRegistrations().filter((r) => r.ino === ino);
            stopped = server;
            return server.stop();
          },
        ),
      expected,
    );
    const { name, version } = currentRuntime()!;
    const runtimeName = `${name === "deno" ? "Deno" : "Bun"} ${version}`;
    assert(err.message.includes(`${runtimeName}'s native server`), err.message);
    assert(err.message.includes("@tableroll/tableroll/node"), err.message);
    assert(err.message.includes(testedRange(name)), err.message);
    assert(stopped, "the server was stopped");
    assertEquals(watching, [], "no epoll watched the socket");
    await stopped.stop();
    const client = openSocket("inet", "stream");
    try {
      connect(client, address);
      await waitReadable(source);
      const conn = accept(source);
      assert(conn !== null, "the connection waited for the socket's owner");
      close(conn);
    } finally {
      close(client);
    }
  } finally {
    close(source);
  }
}

test(`adopt: ${runtime}'s listener out of its epoll is refused, and the server stopped`, () =>
  refusedAfter(
    (fd, r) => registerWith(r.epollFd, fd, 0n, 0, EPOLL_CTL_DEL),
    "no epoll instance watches",
  ));

test(`adopt: ${runtime}'s listener registered without EPOLLIN is refused`, () =>
  refusedAfter(
    (fd, r) =>
      registerWith(r.epollFd, fd, r.data, r.events & ~EPOLLIN, EPOLL_CTL_MOD),
    "does not wait for connections",
  ));

test(`adopt: a registration that does not read back after the swap is undone before ${runtime} accepts`, async () => {
  // A second epoll instance with the same registration looks like the
  // runtime's own seen twice, but the swap re-registers only the first.
  const other = libc.epoll_create1(EPOLL_CLOEXEC);
  try {
    await refusedAfter(
      (fd, r) => registerWith(other, fd, r.data, r.events),
      `after re-registering`,
    );
  } finally {
    close(other);
  }
});
