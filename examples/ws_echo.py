#!/usr/bin/env python3
"""A small WebSocket echo server (RFC 6455, standard library only) for the
proxy demo: `python3 examples/ws_echo.py [PORT]` (default 9010), then run
webserv with conf.d/examples/proxy.conf and open http://127.0.0.1:8080/websocket.html.

Each text or binary message comes back as it was sent; a ping gets a pong;
a close is answered with a close.
"""

import base64
import hashlib
import socket
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        piece = conn.recv(n - len(data))
        if not piece:
            raise EOFError
        data += piece
    return data


def send_frame(conn, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    conn.sendall(head + payload)


def handshake(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(4096)
        if not piece or len(data) > 16384:
            return False
        data += piece
    key = None
    for line in data.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if key is None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return False
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return True


def serve(conn):
    with conn:
        if not handshake(conn):
            return
        try:
            while True:
                b0, b1 = read_exact(conn, 2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(read_exact(conn, 2), "big")
                elif n == 127:
                    n = int.from_bytes(read_exact(conn, 8), "big")
                mask = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(conn, n)))
                if opcode in (1, 2, 0):
                    send_frame(conn, opcode, data)
                elif opcode == 9:
                    send_frame(conn, 10, data)
                elif opcode == 8:
                    send_frame(conn, 8, data[:2])
                    return
        except (EOFError, OSError):
            return


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9010
    listener = socket.create_server(("127.0.0.1", port))
    print(f"ws echo on 127.0.0.1:{port}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
