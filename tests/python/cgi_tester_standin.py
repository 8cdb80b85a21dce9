#!/usr/bin/env python3
"""Behaves as the 42 tester's `cgi_tester` does: the whole request body from
stdin, answered with `Status: 200 OK`, `Content-Type: text/html;
charset=utf-8` and the body upper-cased.

It streams (64 KiB at a time), so a 100,000,000-byte body never sits in
memory. Unlike the real binary it also reports the tester's secret header
(`X-Secret-Header-For-Test` as `HTTP_X_SECRET_HEADER_FOR_TEST`) and the
`CONTENT_LENGTH` it was given, so the tests can see what reached it.
"""

import os
import sys

PIECE = 64 * 1024


def main() -> None:
    out = sys.stdout.buffer
    head = ["Status: 200 OK", "Content-Type: text/html; charset=utf-8"]
    secret = os.environ.get("HTTP_X_SECRET_HEADER_FOR_TEST")
    if secret is not None:
        head.append(f"X-Secret-Seen: {secret}")
    head.append(f"X-Content-Length-Seen: {os.environ.get('CONTENT_LENGTH', '')}")
    out.write(("\r\n".join(head) + "\r\n\r\n").encode())
    stdin = sys.stdin.buffer
    while True:
        piece = stdin.read1(PIECE)
        if not piece:
            break
        out.write(piece.upper())
    out.flush()


if __name__ == "__main__":
    main()
