#!/usr/bin/env python3
"""CGI demo: print the CGI environment (RFC 3875 section 4.1), sorted, as text."""

import os
import sys


def main() -> None:
    lines = [f"{name}={value}" for name, value in sorted(os.environ.items())]
    body = "\n".join(lines) + "\n"
    sys.stdout.write("Content-Type: text/plain; charset=utf-8\r\n\r\n")
    sys.stdout.write(body)


if __name__ == "__main__":
    main()
