"""Uploads as a Python client makes them (SPEC section 4 upload, PUT and
DELETE rows): requests' multipart encoder, PUT, DELETE, and a generator body
that requests sends chunked. Every check compares the bytes on disk.

Run: python3 -m pytest -q tests/python/test_uploads.py
(builds nothing: set WEBSERV_BIN, or build target/debug or target/release).
"""

import os
import random
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

# --- BEGIN minimal self-contained fixture ------------------------------------
# To be replaced by the shared conftest fixture once it lands: it only has to
# provide `base_url` and the `store` directory behind /uploads/.

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0
TIMEOUT = 10.0

CONFIG = """
server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    client_max_body_size 20m;
    location /uploads/ {{
        alias {dir}/store/;
        upload_store {dir}/store;
        methods GET HEAD POST PUT DELETE;
    }}
}}
"""


def _binary():
    candidates = [
        os.environ.get("WEBSERV_BIN"),
        ROOT / "target" / "debug" / "webserv",
        ROOT / "target" / "release" / "webserv",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return str(c)
    pytest.skip("no webserv binary: set WEBSERV_BIN or run cargo build")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """(base_url, store directory) of a webserv started for this module."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "www").mkdir()
        (tmp / "store").mkdir()
        port = _free_port()
        conf = tmp / "test.conf"
        conf.write_text(CONFIG.format(port=port, dir=tmp))
        proc = subprocess.Popen(
            [_binary(), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            seen = b""
            while b"listening on" not in seen:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    raise RuntimeError(
                        "webserv did not start: %r %r"
                        % (seen, proc.stderr.read1(65536) if proc.poll() is not None else b"")
                    )
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    seen += proc.stdout.read1(4096)
            yield "http://127.0.0.1:%d" % port, tmp / "store"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)


# --- END minimal self-contained fixture --------------------------------------


@pytest.fixture
def store(server):
    """The store, emptied before each test."""
    _, path = server
    for p in path.iterdir():
        p.unlink()
    return path


@pytest.fixture
def url(server):
    base, _ = server
    return base


def data(n, seed):
    return random.Random(seed).randbytes(n)


def tricky():
    return b"\r\n--\r\n\r\n--boundary--\r\n" + bytes(range(256)) + b"\r\n--"


def names(store):
    return sorted(p.name for p in store.iterdir())


def test_post_one_file(url, store):
    content = tricky() + data(5000, 1)
    r = requests.post(url + "/uploads/", files={"file": ("one.bin", content)}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/uploads/one.bin"
    assert names(store) == ["one.bin"]
    assert (store / "one.bin").read_bytes() == content
    back = requests.get(url + r.headers["Location"], timeout=TIMEOUT)
    assert back.status_code == 200
    assert back.content == content


def test_post_several_files_and_a_field(url, store):
    files = [
        ("a", ("a.txt", b"alpha\r\n")),
        ("b", ("b.bin", data(70_000, 2))),
        ("c", ("c.dat", tricky())),
    ]
    r = requests.post(
        url + "/uploads/", files=files, data={"comment": "not a file"}, timeout=TIMEOUT
    )
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/uploads/a.txt"
    assert names(store) == ["a.txt", "b.bin", "c.dat"]
    for _, (name, content) in files:
        assert (store / name).read_bytes() == content, name


def test_post_same_name_twice_keeps_both(url, store):
    for content in (b"first", b"second"):
        r = requests.post(url + "/uploads/", files={"f": ("same.txt", content)}, timeout=TIMEOUT)
        assert r.status_code == 201
    assert names(store) == ["same-1.txt", "same.txt"]
    assert (store / "same.txt").read_bytes() == b"first"
    assert (store / "same-1.txt").read_bytes() == b"second"


def test_post_file_name_cannot_escape(url, store):
    r = requests.post(
        url + "/uploads/", files={"f": ("../../escape.txt", b"x")}, timeout=TIMEOUT
    )
    assert r.status_code == 201
    assert names(store) == ["escape.txt"]
    assert not (store.parent / "escape.txt").exists()


def test_put_then_replace(url, store):
    content = data(300_000, 3)
    r = requests.put(url + "/uploads/put.bin", data=content, timeout=TIMEOUT)
    assert r.status_code == 201
    assert (store / "put.bin").read_bytes() == content
    r = requests.put(url + "/uploads/put.bin", data=b"new", timeout=TIMEOUT)
    assert r.status_code == 204
    assert (store / "put.bin").read_bytes() == b"new"
    assert requests.get(url + "/uploads/put.bin", timeout=TIMEOUT).content == b"new"


def test_put_into_missing_directory_is_409(url, store):
    r = requests.put(url + "/uploads/no/such/dir.txt", data=b"x", timeout=TIMEOUT)
    assert r.status_code == 409
    assert names(store) == []


def test_delete(url, store):
    (store / "doomed.txt").write_bytes(b"bye")
    r = requests.delete(url + "/uploads/doomed.txt", timeout=TIMEOUT)
    assert r.status_code == 204
    assert names(store) == []
    assert requests.delete(url + "/uploads/doomed.txt", timeout=TIMEOUT).status_code == 404


def test_generator_body_is_sent_chunked(url, store):
    pieces = [tricky(), data(100_000, 4), b"", b"x", data(12345, 5)]
    expected = b"".join(pieces)

    def gen():
        yield from pieces

    r = requests.put(url + "/uploads/chunked.bin", data=gen(), timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert (store / "chunked.bin").read_bytes() == expected


def test_generator_raw_post_gets_a_location(url, store):
    expected = data(50_000, 6)

    def gen():
        for i in range(0, len(expected), 999):
            yield expected[i : i + 999]

    r = requests.post(
        url + "/uploads/",
        data=gen(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    assert location.startswith("/uploads/")
    assert requests.get(url + location, timeout=TIMEOUT).content == expected
    assert len(names(store)) == 1


def test_session_keeps_the_connection_across_uploads(url, store):
    with requests.Session() as s:
        for i in range(5):
            r = s.put(url + "/uploads/k%d.txt" % i, data=b"%d" % i, timeout=TIMEOUT)
            assert r.status_code == 201
        r = s.post(url + "/uploads/", files={"f": ("k.txt", b"post")}, timeout=TIMEOUT)
        assert r.status_code == 201
    assert names(store) == ["k.txt"] + ["k%d.txt" % i for i in range(5)]
