"""The 42 school tester, replayed against `conf.d/examples/tester.conf`.

The real tester is a Go client: it follows redirects, keeps connections
alive, and sends every POST and PUT body chunked (the empty one too). This
file runs the repository's own `tester.conf` (only its listen port and its
two relative paths are swapped for temp ones), over a temp copy of
`YoupiBanane/`, with `cgi_tester_standin.py` as `cgi_tester`. It replays the
tester's requests in order, checks each status and body, then its load phase
with the same concurrency, scaled down so the file runs in about a minute on
two cores. `WEBSERV_FULL_42=1` runs the load at the tester's full size (20 x
5000 GET /, 20 x 5 POST of 100,000,000 bytes; needs ~2 GB free in TMPDIR).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness import REPO, wait_until

TIMEOUT = 120  # seconds, per request (a 100 MB CGI round trip on a debug build)
FULL = os.environ.get("WEBSERV_FULL_42") == "1"
STANDIN = Path(__file__).resolve().parent / "cgi_tester_standin.py"
BIG = 100_000_000
PIECE = 1 << 20
ALPHABET = bytes(range(ord("a"), ord("z") + 1)) + b"0123456789 .,-\n"

# The tester's load phase: (workers, times each) at full size, and scaled.
LOAD = {
    "get_root": ((20, 5000), (20, 500)),
    "get_nop": ((128, 50), (128, 10)),
    "put": ((20, 5), (20, 2)),
    "post_bla": ((20, 5), (20, 2)),
}
LOAD_POST_SIZE = BIG if FULL else 10_000_000


def pattern_pieces(size: int):
    """`size` bytes of lower-case text, in pieces of at most 1 MiB."""
    block = (ALPHABET * (PIECE // len(ALPHABET) + 1))[:PIECE]
    sent = 0
    while sent < size:
        n = min(PIECE, size - sent)
        yield block[:n]
        sent += n


def chunked(size: int):
    """A generator body: requests sends it chunked, as the Go tester does."""
    return (piece for piece in pattern_pieces(size))


def expected_digest(size: int) -> str:
    h = hashlib.sha256()
    for piece in pattern_pieces(size):
        h.update(piece.upper())
    return h.hexdigest()


def body_digest(response: requests.Response) -> tuple[str, int]:
    h = hashlib.sha256()
    total = 0
    for piece in response.iter_content(1 << 16):
        h.update(piece)
        total += len(piece)
    return h.hexdigest(), total


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A temp YoupiBanane tree and the `cgi_tester` wrapper around the stand-in."""
    base = tmp_path_factory.mktemp("tester")
    youpi = base / "YoupiBanane"
    shutil.copytree(REPO / "YoupiBanane", youpi)
    wrapper = base / "cgi_tester"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return youpi, wrapper


@pytest.fixture(scope="module")
def server(webserv_module, site):
    youpi, wrapper = site
    text = (REPO / "conf.d/examples/tester.conf").read_text()
    # Test the real file: only what must move for a temp run changes.
    for needed in ("listen 127.0.0.1:8080;", "../../YoupiBanane", "./cgi_tester"):
        assert needed in text, f"tester.conf no longer has {needed!r}"
    text = (text.replace("listen 127.0.0.1:8080;", "listen 127.0.0.1:{port};")
            .replace("../../YoupiBanane", "{youpi}")
            .replace("./cgi_tester", "{cgi_tester}"))
    return webserv_module.start(text, youpi=youpi, cgi_tester=wrapper)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        s.headers["User-Agent"] = "Go-http-client/1.1"
        yield s


# ---- the request sequence ------------------------------------------------------------


def test_get_root_is_the_index(server, session, site):
    youpi, _ = site
    r = session.get(server.url + "/", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == (youpi / "youpi.bad_extension").read_bytes()


def test_post_root_with_empty_chunked_body_is_405(server, session):
    r = session.post(server.url + "/", data=chunked(0), timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "GET" in r.headers["Allow"]


def test_head_root_is_405(server, session):
    assert session.head(server.url + "/", timeout=TIMEOUT).status_code == 405


@pytest.mark.parametrize(
    ("path", "status", "content_of"),
    [
        ("/directory", 200, "youpi.bad_extension"),
        ("/directory/youpi.bad_extension", 200, "youpi.bad_extension"),
        ("/directory/oulalala", 404, None),
        ("/directory/nop", 200, "nop/youpi.bad_extension"),
        ("/directory/nop/", 200, "nop/youpi.bad_extension"),
        ("/directory/nop/other.pouic", 200, "nop/other.pouic"),
        ("/directory/nop/other.pouac", 404, None),
        ("/directory/nop/other.pouic/", 404, None),
        ("/directory/Yeah", 404, None),
        ("/directory/Yeah/not_happy.bad_extension", 200, "Yeah/not_happy.bad_extension"),
    ],
)
def test_directory_gets(server, session, site, path, status, content_of):
    youpi, _ = site
    r = session.get(server.url + path, timeout=TIMEOUT, allow_redirects=True)
    assert r.status_code == status, f"{path}: {r.status_code} {r.text[:200]!r}"
    if content_of is not None:
        assert r.content == (youpi / content_of).read_bytes()


def test_directory_redirects_like_nginx(server, session):
    """What the tester's client follows: 301 to the path with a slash."""
    r = session.get(server.url + "/directory", timeout=TIMEOUT, allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"].endswith("/directory/")


def test_get_bla_runs_the_cgi(server, session):
    r = session.get(server.url + "/directory/youpi.bla", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.content == b""


def test_put_creates_then_replaces(server, session, site):
    youpi, _ = site
    target = youpi / "put_test" / "file_should_exist_after"
    small = b"".join(pattern_pieces(1000))
    r = session.put(server.url + "/put_test/file_should_exist_after",
                    data=iter([small]), timeout=TIMEOUT)
    assert r.status_code == 201
    assert target.read_bytes() == small
    r = session.put(server.url + "/put_test/file_should_exist_after",
                    data=chunked(10_000_000), timeout=TIMEOUT)
    assert r.status_code == 204  # replaced (SPEC section 4)
    assert target.stat().st_size == 10_000_000


@pytest.mark.parametrize("script", ["youpi.bla", "youpla.bla"])
def test_post_100_million_bytes_to_bla(server, session, script):
    r = session.post(server.url + f"/directory/{script}", data=chunked(BIG),
                     headers={"Content-Type": "test/file"}, timeout=TIMEOUT, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Content-Length-Seen"] == str(BIG)
    digest, total = body_digest(r)
    assert total == BIG
    assert digest == expected_digest(BIG)


def test_post_bla_with_the_secret_header(server, session):
    r = session.post(server.url + "/directory/youpi.bla", data=chunked(100_000),
                     headers={"Content-Type": "test/file", "X-Secret-Header-For-Test": "1"},
                     timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers.get("X-Secret-Seen") == "1"
    assert r.content == b"".join(pattern_pieces(100_000)).upper()


@pytest.mark.parametrize(("size", "status"), [(0, 200), (100, 200), (200, 413), (101, 413)])
def test_post_body_limit(server, size, status):
    # A fresh session each time: a 413 closes its connection.
    with requests.Session() as s:
        r = s.post(server.url + "/post_body", data=chunked(size),
                   headers={"Content-Type": "test/file"}, timeout=TIMEOUT)
    assert r.status_code == status


# ---- the load phase ----------------------------------------------------------------


def run_workers(workers: int, times: int, job) -> list[int]:
    def worker(index: int) -> list[int]:
        with requests.Session() as s:
            return [job(s, index, i) for i in range(times)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(worker, range(workers)))
    return [status for statuses in results for status in statuses]


def sizes(name: str) -> tuple[int, int]:
    full, scaled = LOAD[name]
    return full if FULL else scaled


def test_load_get_root(server):
    assert run_workers(5, 15, lambda s, w, i: s.get(server.url + "/", timeout=TIMEOUT)
                       .status_code) == [200] * 75
    workers, times = sizes("get_root")
    statuses = run_workers(workers, times,
                           lambda s, w, i: s.get(server.url + "/", timeout=TIMEOUT).status_code)
    assert statuses == [200] * (workers * times)


def test_load_get_directory_nop(server):
    workers, times = sizes("get_nop")
    statuses = run_workers(workers, times, lambda s, w, i: s.get(
        server.url + "/directory/nop", timeout=TIMEOUT).status_code)
    assert statuses == [200] * (workers * times)


def test_load_put(server, site):
    youpi, _ = site
    workers, times = sizes("put")
    statuses = run_workers(workers, times, lambda s, w, i: s.put(
        server.url + "/put_test/multiple_same", data=chunked(1_000_000),
        timeout=TIMEOUT).status_code)
    assert set(statuses) <= {201, 204} and statuses.count(201) <= 1, statuses
    assert (youpi / "put_test" / "multiple_same").stat().st_size == 1_000_000


def test_load_post_bla(server):
    workers, times = sizes("post_bla")
    digest = expected_digest(LOAD_POST_SIZE)

    def job(s: requests.Session, w: int, i: int) -> int:
        r = s.post(server.url + "/directory/youpi.bla", data=chunked(LOAD_POST_SIZE),
                   headers={"Content-Type": "test/file"}, timeout=TIMEOUT, stream=True)
        got, total = body_digest(r)
        assert (got, total) == (digest, LOAD_POST_SIZE)
        return r.status_code

    assert run_workers(workers, times, job) == [200] * (workers * times)


def test_no_zombie_after_the_load(server):
    """Every cgi_tester run was reaped."""
    def zombies() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 1:].split()
            if fields[0] == "Z" and int(fields[1]) == server.pid:
                found.append(int(entry.name))
        return found

    wait_until(lambda: not zombies(), 5, "no zombie children")
    assert server.alive()
