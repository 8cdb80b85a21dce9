#!/usr/bin/env python3
"""CGI demo: GET shows a form; POST echoes the decoded fields, HTML-escaped."""

from __future__ import annotations

import html
import os
import sys
from urllib.parse import parse_qsl

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>echo.py · webserv demo</title>
  <link rel="icon" href="/assets/logo.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<header class="top"><a href="/"><img src="/assets/logo.svg" alt=""></a><h1>echo.py</h1></header>
<main>
{content}
</main>
</body>
</html>
"""

FORM = """<p class="lead">This form is POSTed back to the same script, which echoes
  what it received. The request body reaches the script on its standard input.</p>
<form method="post" action="{action}">
  <label for="name">Name</label>
  <input id="name" name="name" type="text" value="Ada">
  <label for="message">Message</label>
  <textarea id="message" name="message">Hello &lt;webserv&gt; &amp; friends!</textarea>
  <button type="submit">POST it</button>
</form>"""


def read_body() -> bytes:
    try:
        length = int(os.environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return sys.stdin.buffer.read(length) if length > 0 else b""


def fields_table(fields: list[tuple[str, str]]) -> str:
    if not fields:
        return "<p>No fields.</p>"
    rows = "\n".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(value)}</td></tr>"
        for name, value in fields
    )
    return f"<table><thead><tr><th>Field</th><th>Value</th></tr></thead>\n{rows}\n</table>"


def echo(body: bytes, action: str) -> str:
    content_type = os.environ.get("CONTENT_TYPE", "")
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        shown = fields_table(fields)
    else:
        preview = body[:2048].decode("utf-8", "replace")
        shown = f"<p>Not a URL-encoded form; the first bytes:</p><pre>{html.escape(preview)}</pre>"
    return (
        f'<p class="lead">Received {len(body)} bytes of '
        f"<code>{html.escape(content_type or 'no Content-Type')}</code>.</p>\n"
        f"{shown}\n"
        f'<p><a href="{html.escape(action)}">Send another</a></p>'
    )


def main() -> None:
    action = os.environ.get("SCRIPT_NAME", "/cgi-bin/echo.py")
    method = os.environ.get("REQUEST_METHOD", "GET")
    if method == "POST":
        content = echo(read_body(), action)
    elif method in ("GET", "HEAD"):
        query = parse_qsl(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)
        content = FORM.format(action=html.escape(action))
        if query:
            content += "\n<h2>Query string</h2>\n" + fields_table(query)
    else:
        sys.stdout.write("Status: 405 Method Not Allowed\r\nAllow: GET, HEAD, POST\r\n")
        sys.stdout.write("Content-Type: text/plain\r\n\r\nUse GET or POST.\n")
        return
    sys.stdout.write("Content-Type: text/html; charset=utf-8\r\n\r\n")
    sys.stdout.write(PAGE.format(content=content))


if __name__ == "__main__":
    main()
