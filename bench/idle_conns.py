#!/usr/bin/env python3
"""Open N keep-alive connections, make one request on each, then hold them idle.

Prints `ready OK_COUNT` once every connection has had its answer (or failed),
then keeps them open until killed or until --hold seconds pass. Used by
bench/run.sh to measure a server's memory per idle connection.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import ssl
import sys
import time


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--path", default="/small.bin")
    p.add_argument("--timeout", type=float, default=60.0, help="to open and answer them all")
    p.add_argument("--hold", type=float, default=120.0, help="seconds to keep them open")
    p.add_argument("--tls", action="store_true", help="TLS (certificate not verified)")
    return p.parse_args()


def answered(buffer: bytes) -> bool:
    """True once `buffer` holds a whole response framed by Content-Length."""
    head, sep, body = buffer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def main() -> int:
    args = parse_args()
    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    deadline = time.monotonic() + args.timeout
    sel = selectors.DefaultSelector()
    conns: list[socket.socket] = []
    pending: dict[socket.socket, bytes] = {}
    lost = 0  # connected, but closed or failed before a whole answer
    context = None
    if args.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for _ in range(args.count):
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=5)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(request)
        except OSError:
            continue
        sock.setblocking(False)
        conns.append(sock)
        pending[sock] = b""
        sel.register(sock, selectors.EVENT_READ)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""
            if not data:
                lost += 1
                sel.unregister(sock)
                del pending[sock]
                continue
            pending[sock] += data
            if answered(pending[sock]):
                sel.unregister(sock)
                del pending[sock]
    ok = len(conns) - lost - len(pending)
    print(f"ready {ok}", flush=True)
    time.sleep(args.hold)
    for sock in conns:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
