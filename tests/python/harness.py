"""Run the real webserv binary for the Python tests.

`ServerFactory.start(config_text)` writes a config (with `{port}`-style
placeholders filled in), starts `webserv CONFIG`, waits until every listen port
accepts, and returns a `Server`. `ServerFactory.close()` stops them all. The
fixtures in conftest.py wrap this; tests only see `Server`.

Also here: raw-socket helpers and a small HTTP/1.1 response parser, for what
`requests` cannot express (malformed input, pipelining, exact bytes).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0  # seconds for the server to accept on every port
STOP_TIMEOUT = 10.0  # seconds for SIGTERM, then as much again after SIGKILL
POLL_INTERVAL = 0.02
RAW_TIMEOUT = 5.0
RAW_LIMIT = 16 * 1024 * 1024

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def find_binary() -> Path:
    """WEBSERV_BIN, else the release build, else the debug build."""
    env = os.environ.get("WEBSERV_BIN")
    candidates = [Path(env)] if env else [
        REPO / "target" / "release" / "webserv",
        REPO / "target" / "debug" / "webserv",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"no webserv binary (tried {tried}); run `cargo build --release`")


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (bind 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create `files` ({relative path: content}) under `root`; a path ending in
    `/` is an empty directory. Returns `root`."""
    for rel, content in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
    return root


def fill(template: str, values: dict[str, object]) -> str:
    """Replace `{name}` placeholders; braces of blocks (`{ ... }`) are left alone.

    An unknown `{name}` is a typo in the test, so it raises.
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"unknown placeholder {{{name}}} in config; known: {sorted(values)}")
        return str(values[name])

    return PLACEHOLDER.sub(sub, template)


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = POLL_INTERVAL) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- raw HTTP ----------------------------------------------------------------


def request_bytes(method: str, target: str, headers: dict[str, str] | None = None,
                  body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """A request head (and body). Host defaults to localhost; Content-Length is
    added for a body unless the caller set framing headers."""
    fields = {"Host": "localhost"}
    fields.update(headers or {})
    lower = {k.lower() for k in fields}
    if body and "content-length" not in lower and "transfer-encoding" not in lower:
        fields["Content-Length"] = str(len(body))
    head = f"{method} {target} {version}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


def recv_all(sock: socket.socket, timeout: float = RAW_TIMEOUT, limit: int = RAW_LIMIT) -> bytes:
    """Read until the peer closes, `limit` bytes, or `timeout` seconds in total."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(65536, limit - size))
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class IncompleteResponse(ValueError):
    pass


def parse_responses(data: bytes, head_only: bool = False) -> list[Response]:
    """Split a byte stream into the HTTP/1.x responses it holds, in order.

    Bodies are framed by Content-Length, chunked encoding, or the end of the
    data. `head_only` treats every response as one to a HEAD (no body), and so
    does a 1xx, 204 or 304 status.
    """
    responses = []
    rest = data
    while rest:
        response, rest = _parse_one(rest, head_only)
        responses.append(response)
    return responses


def parse_response(data: bytes, head_only: bool = False) -> Response:
    """Exactly one response."""
    responses = parse_responses(data, head_only)
    if len(responses) != 1:
        raise ValueError(f"expected one response, got {len(responses)}: {data[:300]!r}")
    return responses[0]


def _parse_one(data: bytes, head_only: bool) -> tuple[Response, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise IncompleteResponse(f"no complete response head in {data[:300]!r}")
    lines = data[:end].decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    response = Response(int(status), reason, headers, b"", version)
    rest = data[end + 4:]
    code = response.status
    if head_only or code < 200 or code in (204, 304):
        return response, rest
    if (response.header("Transfer-Encoding") or "").lower() == "chunked":
        response.body, rest = _dechunk(rest)
    elif response.header("Content-Length") is not None:
        length = int(response.header("Content-Length"))
        if len(rest) < length:
            raise IncompleteResponse(f"body has {len(rest)} of {length} bytes")
        response.body, rest = rest[:length], rest[length:]
    else:
        response.body, rest = rest, b""
    return response, rest


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = []
    while True:
        eol = data.find(b"\r\n")
        if eol < 0:
            raise IncompleteResponse("truncated chunk size line")
        size = int(data[:eol].split(b";")[0], 16)
        data = data[eol + 2:]
        if size == 0:
            trailer_end = data.find(b"\r\n")  # no trailers expected: the final CRLF
            if trailer_end < 0:
                raise IncompleteResponse("truncated last chunk")
            return b"".join(body), data[trailer_end + 2:]
        if len(data) < size + 2:
            raise IncompleteResponse("truncated chunk")
        body.append(data[:size])
        data = data[size + 2:]


class HttpConnection:
    """One kept-alive client connection: send requests, read responses one by one.

    Responses must be framed (Content-Length or chunked), as every response
    on a persistent connection is."""

    def __init__(self, sock: socket.socket, timeout: float = RAW_TIMEOUT):
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response:
        self.send(request_bytes(method, target, headers, body))
        return self.read_response(head_only=(method == "HEAD"))

    def read_response(self, head_only: bool = False) -> Response:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.buffer:
                try:
                    response, self.buffer = _parse_one(self.buffer, head_only)
                    return response
                except IncompleteResponse:
                    pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response within {self.timeout}s: "
                                   f"{self.buffer[:300]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError(f"closed before a complete response: {self.buffer[:300]!r}")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- servers -----------------------------------------------------------------


@dataclass
class Server:
    """A running webserv. `port` is the first of `ports` ({port}, {port2}, ...)."""

    proc: subprocess.Popen
    config_path: Path
    ports: list[int]
    values: dict[str, object]
    stdout_path: Path
    stderr_path: Path
    _files: list = field(default_factory=list, repr=False)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}{path}"

    def connect(self, port: int | None = None, timeout: float = RAW_TIMEOUT) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port or self.port), timeout=timeout)

    def open(self, port: int | None = None, timeout: float = RAW_TIMEOUT) -> HttpConnection:
        """A persistent connection for several requests (use it in a `with`)."""
        return HttpConnection(self.connect(port, timeout), timeout)

    def raw(self, data: bytes, timeout: float = RAW_TIMEOUT, limit: int = RAW_LIMIT,
            port: int | None = None) -> bytes:
        """Send `data` on a new connection; return what comes back until the
        server closes, `limit` bytes or `timeout` seconds. Ask for
        `Connection: close` to get an answer without waiting for the timeout."""
        with self.connect(port, timeout) as sock:
            sock.sendall(data)
            return recv_all(sock, timeout, limit)

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"", **kwargs) -> Response:
        """One request on its own connection (`Connection: close`), parsed."""
        fields = {"Connection": "close", **(headers or {})}
        data = self.raw(request_bytes(method, target, fields, body), **kwargs)
        return parse_response(data, head_only=(method == "HEAD"))

    def output(self) -> str:
        """Everything the server printed so far (stdout then stderr)."""
        return (self.stdout_path.read_text(errors="replace")
                + self.stderr_path.read_text(errors="replace"))

    def write_config(self, text: str) -> None:
        """Replace the config file (placeholders filled with this server's values)."""
        self.config_path.write_text(fill(text, self.values))

    def reload(self, text: str | None = None) -> None:
        """Optionally rewrite the config, then send SIGHUP."""
        if text is not None:
            self.write_config(text)
        self.proc.send_signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status
        (negative for a signal, as subprocess does); raises if it never exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for f in self._files:
            f.close()
        self._files.clear()
        assert self.proc.returncode is not None, f"webserv (pid {self.pid}) did not exit"
        return self.proc.returncode


class ServerFactory:
    """Starts servers in a temp dir and stops every one of them on `close()`."""

    def __init__(self, tmp: Path, binary: Path | None = None):
        self.tmp = tmp
        self.binary = binary or find_binary()
        self.servers: list[Server] = []

    def start(self, config: str, *, ports: int = 1, name: str = "webserv",
              wait: bool = True, **values: object) -> Server:
        """Start `webserv` on `config` text.

        Placeholders: `{port}`, `{port2}` ... `{portN}` (free ports, N = `ports`),
        `{tmp}` (this factory's temp dir) and any keyword given, e.g.
        `root=path`. Unless `wait=False`, returns once every port accepts.
        """
        run_dir = self.tmp / f"{name}-{len(self.servers)}"
        run_dir.mkdir(parents=True)
        port_list = free_ports(ports)
        filled: dict[str, object] = {"tmp": self.tmp, **values}
        for i, port in enumerate(port_list, start=1):
            filled["port" if i == 1 else f"port{i}"] = port
        config_path = run_dir / "webserv.conf"
        config_path.write_text(fill(config, filled))
        stdout_path, stderr_path = run_dir / "stdout.log", run_dir / "stderr.log"
        out, err = stdout_path.open("wb"), stderr_path.open("wb")
        proc = subprocess.Popen(
            [str(self.binary), str(config_path)],
            cwd=run_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        )
        server = Server(proc, config_path, port_list, filled, stdout_path, stderr_path, [out, err])
        self.servers.append(server)
        if wait:
            self.wait_ready(server)
        return server

    def wait_ready(self, server: Server) -> None:
        def ready() -> bool:
            if not server.alive():
                raise RuntimeError(
                    f"webserv exited with {server.proc.returncode} before accepting:\n"
                    f"{server.output()}")
            return all(accepts(p) for p in server.ports)

        try:
            wait_until(ready, START_TIMEOUT, f"webserv to accept on {server.ports}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{server.output()}") from None

    def close(self) -> None:
        """Stop every server; fail if one would not exit."""
        errors = []
        for server in self.servers:
            try:
                server.stop()
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                errors.append(f"pid {server.pid}: {exc}")
        self.servers.clear()
        assert not errors, "servers that did not exit: " + "; ".join(errors)
