#!/usr/bin/env python3
"""CGI demo: stream ten lines, one every half second, without Content-Length.

The server relays the output as it comes (chunked for HTTP/1.1 clients), and
keeps serving other clients meanwhile: try it with `curl -N`.
"""

import sys
import time

LINES = 10
INTERVAL = 0.5


def main() -> None:
    out = sys.stdout
    out.write("Content-Type: text/plain; charset=utf-8\r\n\r\n")
    out.flush()
    for n in range(1, LINES + 1):
        out.write(f"line {n} of {LINES} at {time.strftime('%H:%M:%S')}\n")
        out.flush()
        if n < LINES:
            time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
