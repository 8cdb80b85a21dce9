"""The demo CGI scripts of `www/cgi-bin/` as a user sees them (SPEC section 6):
the environment dump, the form echo (plain and chunked), PHP, Perl, sh, the
streamed answer, and the cookie/session demo. A temp config serves the
repository's `www/cgi-bin` by absolute path on a free port."""

from __future__ import annotations

import re
import shutil
import time

import pytest
import requests

from harness import REPO

TIMEOUT = 10  # seconds, for every client call
CGI_BIN = REPO / "www" / "cgi-bin"

CONFIG = """
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {root};

    location /cgi-bin/ {
        alias {cgi_bin}/;
        methods GET HEAD POST;
        cgi .py python3;
        cgi .sh /bin/sh;
        cgi .pl perl;
        cgi .php php-cgi;
        cgi_timeout 10s;
    }
}
"""

SECRET = ("WEBSERV_PY_TEST_SECRET", "never-in-a-script-7c1e")


@pytest.fixture
def server(webserv, tmp_path, monkeypatch):
    # The server inherits this: the scripts must not see it.
    monkeypatch.setenv(*SECRET)
    root = tmp_path / "root"
    root.mkdir()
    return webserv.start(CONFIG, root=root, cgi_bin=CGI_BIN)


def env_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_env_dump_shows_the_cgi_variables(server):
    r = requests.get(server.url + "/cgi-bin/env.py/more/path?a=1&b=2",
                     headers={"X-Demo": "yes"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    env = env_of(r.text)
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "a=1&b=2"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["SCRIPT_FILENAME"] == str(CGI_BIN / "env.py")
    assert env["PATH_INFO"] == "/more/path"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_NAME"] == "localhost"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REDIRECT_STATUS"] == "200"
    assert env["HTTP_X_DEMO"] == "yes"
    assert SECRET[0] not in env and SECRET[1] not in r.text


def test_echo_form_post(server):
    r = requests.post(server.url + "/cgi-bin/echo.py",
                      data={"name": "Ada", "message": "<b>hi</b> & bye"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert f"Received {len(r.request.body)} bytes" in r.text
    assert "&lt;b&gt;hi&lt;/b&gt; &amp; bye" in r.text
    assert "<b>hi</b>" not in r.text


def test_echo_chunked_post(server):
    body = b"name=Grace&message=" + b"x" * 50_000

    def pieces():
        for i in range(0, len(body), 7_000):
            yield body[i:i + 7_000]

    r = requests.post(server.url + "/cgi-bin/echo.py", data=pieces(), timeout=TIMEOUT,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200
    assert f"Received {len(body)} bytes" in r.text
    assert "Grace" in r.text


def test_php_perl_and_sh(server):
    if shutil.which("php-cgi") is None:
        pytest.skip("php-cgi is not installed (make test installs it)")
    r = requests.get(server.url + "/cgi-bin/hello.php?name=<Bob>", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert "Hello, &lt;Bob&gt;, from PHP" in r.text
    r = requests.get(server.url + "/cgi-bin/hello.pl?x=1", timeout=TIMEOUT)
    assert r.status_code == 200
    assert "Hello from Perl" in r.text and "<code>x=1</code>" in r.text
    r = requests.get(server.url + "/cgi-bin/hello.sh?y=2", timeout=TIMEOUT)
    assert r.status_code == 200
    assert "Hello from sh!" in r.text and "QUERY_STRING=y=2" in r.text


def test_streamed_answer_is_chunked_and_arrives_as_it_is_written(server):
    start = time.monotonic()
    with requests.get(server.url + "/cgi-bin/slow.py", stream=True, timeout=TIMEOUT) as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        lines = r.iter_lines()
        first = next(lines)
        first_at = time.monotonic() - start
        rest = list(lines)
    assert first.startswith(b"line 1 of 10")
    assert first_at < 2.0, f"first line after {first_at:.1f}s: output was buffered"
    assert len(rest) == 9 and rest[-1].startswith(b"line 10 of 10")


def test_head_to_a_script_has_no_body(server):
    r = requests.head(server.url + "/cgi-bin/hello.sh", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.content == b""


def test_session_login_counter_and_logout(server):
    url = server.url + "/cgi-bin/session.py"
    with requests.Session() as s:
        r = s.get(url, timeout=TIMEOUT)
        assert r.status_code == 200 and "You are not logged in" in r.text
        r = s.post(url, data={"action": "login", "name": "Ada"}, timeout=TIMEOUT,
                   allow_redirects=False)
        assert r.status_code == 303
        assert r.headers["Location"] == f"http://127.0.0.1:{server.port}/cgi-bin/session.py"
        assert re.match(r"webserv_sid=[0-9a-f]{64};", r.headers["Set-Cookie"])
        visits = []
        for _ in range(3):
            r = s.get(url, timeout=TIMEOUT)
            assert "Welcome back, <strong>Ada</strong>" in r.text
            visits.append(int(re.search(r"Visits in this session: <strong>(\d+)", r.text)[1]))
        assert visits == [1, 2, 3]
        r = s.post(url, data={"action": "logout"}, timeout=TIMEOUT)
        assert r.status_code == 200 and "You are not logged in" in r.text
        assert "webserv_sid" not in s.cookies or not s.cookies["webserv_sid"]
