#!/usr/bin/env python3
"""bench/drive.py: a fixed number of requests, one at a time, for counting
(instructions under callgrind, system calls under strace) rather than timing.

  --mode close       COUNT connections, one `Connection: close` request each
  --mode keepalive   one connection, COUNT requests on it
  --tls              over TLS (no certificate check; OpenSSL's defaults, as wrk)

Every response is read to its end and its status checked; exits 1 on the
first failure. Prints the negotiated protocol, cipher and group once (TLS).
"""

import argparse
import socket
import ssl
import sys


def read_response(sock, buf):
    """Reads one response (Content-Length framed) from sock; returns the
    status and what follows it in the stream."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head ended")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the body ended")
        rest += chunk
    return status, rest[length:]


def connect(args, context):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    if context is None:
        return sock
    return context.wrap_socket(sock, server_hostname="localhost")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--mode", choices=["close", "keepalive"], default="close")
    parser.add_argument("--path", default="/small.bin")
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()

    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    shown = False

    def show(sock):
        nonlocal shown
        if args.tls and not shown:
            print(f"negotiated {sock.version()} {sock.cipher()[0]}", file=sys.stderr)
            shown = True

    if args.mode == "close":
        request = f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        for _ in range(args.count):
            with connect(args, context) as sock:
                show(sock)
                sock.sendall(request.encode())
                status, _ = read_response(sock, b"")
                if status >= 500:
                    sys.exit(f"status {status}")
    else:
        request = f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        with connect(args, context) as sock:
            show(sock)
            rest = b""
            for _ in range(args.count):
                sock.sendall(request)
                status, rest = read_response(sock, rest)
                if status >= 500:
                    sys.exit(f"status {status}")


if __name__ == "__main__":
    main()
