import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import {
  close,
  dup3,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  epollRegistrations,
  fileIdentity,
  layout,
  libc,
  listenOn,
  localAddress,
} from "../ffi/mod.ts";
import {
  AdoptionError,
  adoptListener,
  listenerOpenedBy,
  serveAdopted,
} from "../adapters/adopt.ts";

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

function registerWith(epollFd: number, fd: number, data: bigint): void {
  const event = new Uint8Array(layout.epollEvent.size);
  const view = new DataView(event.buffer);
  view.setUint32(layout.epollEvent.events, 1, true);
  view.setBigUint64(layout.epollEvent.data, data, true);
  libc.epoll_ctl(epollFd, EPOLL_CTL_ADD, fd, event);
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
    assertThrows(
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
      AdoptionError,
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
  const placeholder = listenOn(loopback);
  const source = listenOn(loopback);
  try {
    const err = assertThrows(
      () => adoptListener(placeholder, source),
      AdoptionError,
      "no epoll instance watches",
    );
    assert(err.message.includes("tableroll/node"), "names the fallback");
    assert(err.runtime.startsWith(runtime === "deno" ? "Deno " : "Bun "));
  } finally {
    close(placeholder);
    close(source);
  }
});

test("adopt: a listener with two different registrations is refused", () => {
  const placeholder = listenOn(loopback);
  const source = listenOn(loopback);
  const epolls = [
    libc.epoll_create1(EPOLL_CLOEXEC),
    libc.epoll_create1(EPOLL_CLOEXEC),
  ];
  try {
    const before = fileIdentity(placeholder);
    registerWith(epolls[0], placeholder, 1n);
    registerWith(epolls[1], placeholder, 2n);
    assertThrows(
      () => adoptListener(placeholder, source),
      AdoptionError,
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
  const placeholder = listenOn(loopback);
  const source = listenOn({ family: "inet6", hostname: "::1", port: 0 });
  try {
    assertThrows(
      () => adoptListener(placeholder, source),
      AdoptionError,
      "inet socket, the socket to adopt is inet6",
    );
  } finally {
    close(placeholder);
    close(source);
  }
});

test("adopt: a server that opened no listener is refused, and stopped", () => {
  const stopped: string[] = [];
  assertThrows(
    () => listenerOpenedBy(() => "server", (s) => stopped.push(s)),
    AdoptionError,
    "opened 0",
  );
  assertEquals(stopped, ["server"]);
});

test("adopt: stopAccepting leaves alone a socket that took the adopted number", () => {
  const placeholder = listenOn(loopback);
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
