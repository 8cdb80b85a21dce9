#!/usr/bin/env python3
"""CGI demo: cookies and a server-side session.

GET shows a login form, or, with a valid session cookie, a welcome and a visit
counter. POST action=login creates a session (id from secrets.token_hex, stored
as a JSON file under the temp dir); POST action=logout deletes it. Both POSTs
answer 303 to the script itself (post/redirect/get).
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import sys
import tempfile
import time
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl

COOKIE = "webserv_sid"
STORE = Path(tempfile.gettempdir()) / "webserv-sessions"
SID_RE = re.compile(r"[0-9a-f]{64}")  # secrets.token_hex(32)
MAX_NAME = 64

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>session.py · webserv demo</title>
  <link rel="icon" href="/assets/logo.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<header class="top"><a href="/"><img src="/assets/logo.svg" alt=""></a><h1>Sessions</h1></header>
<main>
{content}
<p class="lead">The browser holds only a random id in the <code>{cookie}</code> cookie;
  the name and the counter live in a file on the server, under
  <code>{store}</code>.</p>
</main>
</body>
</html>
"""


def session_path(sid: str) -> Path | None:
    """The file of a well-formed session id; None for anything else (no path tricks)."""
    return STORE / f"{sid}.json" if SID_RE.fullmatch(sid) else None


def load(sid: str) -> dict | None:
    path = session_path(sid)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save(sid: str, data: dict) -> None:
    path = session_path(sid)
    assert path is not None, "ids come from new_session or a validated cookie"
    STORE.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Write then rename: a concurrent request never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=STORE, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def cookie_sid() -> str:
    cookies = SimpleCookie()
    try:
        cookies.load(os.environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return ""
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel else ""


def form_fields() -> dict[str, str]:
    try:
        length = int(os.environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = sys.stdin.buffer.read(length) if length > 0 else b""
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def self_url() -> str:
    """Absolute URL of this script: a client redirect needs one (RFC 3875 section 6.2.3)."""
    host = os.environ.get("HTTP_HOST") or (
        f"{os.environ.get('SERVER_NAME', 'localhost')}:{os.environ.get('SERVER_PORT', '80')}"
    )
    return f"http://{host}{os.environ.get('SCRIPT_NAME', '/cgi-bin/session.py')}"


def respond(headers: list[str], content: str) -> None:
    head = headers + ["Content-Type: text/html; charset=utf-8", "Cache-Control: no-store"]
    body = PAGE.format(content=content, cookie=COOKIE, store=html.escape(str(STORE)))
    sys.stdout.write("\r\n".join(head) + "\r\n\r\n" + body)


def redirect(set_cookie: str) -> None:
    url = self_url()
    respond(
        ["Status: 303 See Other", f"Location: {url}", f"Set-Cookie: {set_cookie}"],
        f'<p>Continue to <a href="{html.escape(url)}">{html.escape(url)}</a>.</p>',
    )


def login(fields: dict[str, str]) -> None:
    name = fields.get("name", "").strip()[:MAX_NAME] or "anonymous"
    sid = secrets.token_hex(32)
    save(sid, {"name": name, "visits": 0, "since": int(time.time())})
    redirect(f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax")


def logout(sid: str) -> None:
    path = session_path(sid)
    if path is not None:
        path.unlink(missing_ok=True)
    redirect(f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")


def show(sid: str, action: str) -> None:
    data = load(sid)
    if data is None:
        respond([], f"""<p class="lead">You are not logged in.</p>
<form method="post" action="{action}">
  <input type="hidden" name="action" value="login">
  <label for="name">Your name</label>
  <input id="name" name="name" type="text" maxlength="{MAX_NAME}" required>
  <button type="submit">Log in</button>
</form>""")
        return
    data["visits"] = int(data.get("visits", 0)) + 1
    save(sid, data)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.get("since", 0)))
    respond([], f"""<p class="lead">Welcome back, <strong>{html.escape(str(data.get("name")))}</strong>!</p>
<p>Visits in this session: <strong>{data["visits"]}</strong> (logged in at {since}).
  Reload the page to count one more.</p>
<form method="post" action="{action}">
  <input type="hidden" name="action" value="logout">
  <button class="secondary" type="submit">Log out</button>
</form>""")


def main() -> None:
    action = html.escape(os.environ.get("SCRIPT_NAME", "/cgi-bin/session.py"))
    sid = cookie_sid()
    if os.environ.get("REQUEST_METHOD") == "POST":
        fields = form_fields()
        if fields.get("action") == "logout":
            logout(sid)
        else:
            login(fields)
    else:
        show(sid, action)


if __name__ == "__main__":
    main()
