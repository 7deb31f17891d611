import process from "node:process";
import { test } from "./support/harness.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  accept,
  bindDatagram,
  close,
  connect,
  decodeSockaddr,
  encodeSockaddr,
  formatAddress,
  InvalidAddressError,
  listenOn,
  localAddress,
  openSocket,
  parseIPv6,
  type SocketAddress,
  waitWritable,
} from "../ffi/mod.ts";

function roundTrip(addr: SocketAddress): SocketAddress {
  const bytes = encodeSockaddr(addr);
  return decodeSockaddr(bytes, bytes.length);
}

function inet6(hostname: string, port = 443): SocketAddress {
  return { family: "inet6", hostname, port };
}

test("ffi: IPv4 and IPv6 addresses survive encode and decode", () => {
  for (
    const hostname of ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.1.2.3"]
  ) {
    const addr: SocketAddress = { family: "inet", hostname, port: 8080 };
    assertEquals(roundTrip(addr), addr);
  }
  const bytes = encodeSockaddr({
    family: "inet",
    hostname: "1.2.3.4",
    port: 258,
  });
  assertEquals(Array.from(bytes.subarray(0, 8)), [2, 0, 1, 2, 1, 2, 3, 4]);

  // Input text → canonical RFC 5952 text after the round trip.
  const canonical: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1::", "1::"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of equal runs
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"], // the longest run
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero group stays
    ["fe80::1:2", "fe80::1:2"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
    ["::192.0.2.1", "::c000:201"],
  ];
  for (const [input, expected] of canonical) {
    assertEquals(roundTrip(inet6(input)), inet6(expected), input);
  }
  assertEquals(
    Array.from(parseIPv6("::ffff:192.0.2.1")),
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1],
  );
  assertEquals(formatAddress(inet6("::1", 80)), "[::1]:80");
  assertEquals(
    formatAddress({ family: "inet", hostname: "127.0.0.1", port: 80 }),
    "127.0.0.1:80",
  );
});

test("ffi: malformed IP literals and ports are InvalidAddressError", () => {
  const bad: SocketAddress[] = [
    { family: "inet", hostname: "1.2.3", port: 1 },
    { family: "inet", hostname: "256.1.1.1", port: 1 },
    { family: "inet", hostname: "01.2.3.4", port: 1 },
    { family: "inet", hostname: "127.0.0.1", port: 65536 },
    inet6("1::2::3"),
    inet6("12345::"),
    inet6("1:2:3:4:5:6:7:8:9"),
    inet6("1:2:3:4:5:6:7"),
    inet6("::ffff:256.0.0.1"),
    inet6("1:2:3:4:5:6:7::8"),
  ];
  for (const addr of bad) {
    assertThrows(() => encodeSockaddr(addr), InvalidAddressError);
  }
});

test("ffi: Unix paths and abstract names survive encode and decode", () => {
  const path: SocketAddress = { family: "unix", path: "/tmp/tableroll/sock" };
  assertEquals(roundTrip(path), path);
  // sun_family, the path and its terminating NUL.
  assertEquals(encodeSockaddr(path).length, 2 + 19 + 1);
  const abstract: SocketAddress = {
    family: "unix",
    abstract: "tableroll\u00e9",
  };
  assertEquals(roundTrip(abstract), abstract);
  assertEquals(formatAddress(abstract), "@tableroll\u00e9");
  assertEquals(roundTrip({ family: "unix" }), { family: "unix" });

  const longest: SocketAddress = {
    family: "unix",
    path: "/" + "p".repeat(106),
  };
  assertEquals(roundTrip(longest), longest);
  const err = assertThrows(
    () => encodeSockaddr({ family: "unix", path: "/" + "p".repeat(107) }),
    InvalidAddressError,
    "108 bytes",
  );
  assertEquals(err.name, "InvalidAddressError");
  assertThrows(
    () => encodeSockaddr({ family: "unix", abstract: "a".repeat(108) }),
    InvalidAddressError,
  );
  assertThrows(
    () => encodeSockaddr({ family: "unix", path: "/tmp/a\0b" }),
    InvalidAddressError,
    "NUL",
  );
});

test("ffi: the kernel reports back the addresses it was given", () => {
  const uniqueName = `tableroll-test-${process.pid}-${Math.random()}`;
  const bound: [SocketAddress, number][] = [
    [
      { family: "inet", hostname: "127.0.0.1", port: 0 },
      listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 }),
    ],
    [
      { family: "inet6", hostname: "::1", port: 0 },
      bindDatagram({ family: "inet6", hostname: "::1", port: 0 }),
    ],
    [
      { family: "unix", abstract: uniqueName },
      listenOn({ family: "unix", abstract: uniqueName }),
    ],
  ];
  try {
    for (const [requested, fd] of bound) {
      const actual = localAddress(fd);
      if (actual.family === "unix") {
        assertEquals(actual, requested);
      } else {
        assertEquals([actual.family, actual.hostname], [
          requested.family,
          (requested as { hostname: string }).hostname,
        ]);
        assertEquals(actual.port > 0, true, "the kernel chose a port");
      }
    }
  } finally {
    bound.forEach(([, fd]) => close(fd));
  }
});

test("ffi: connect again on a connection under way or made reports it, as a retry after EINTR must", async () => {
  const listener = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  const address = localAddress(listener);
  const fd = openSocket("inet", "stream", { nonblocking: true });
  let accepted: number | null = null;
  try {
    const first = connect(fd, address);
    // Under way (EALREADY) or, on a fast loopback, made already (EISCONN).
    const again = connect(fd, address);
    assertEquals(first && !again, false, "never connected, then not");
    await waitWritable(fd);
    assertEquals(connect(fd, address), true, "made");
    accepted = accept(listener);
  } finally {
    [fd, listener, ...(accepted === null ? [] : [accepted])].forEach(close);
  }
});
