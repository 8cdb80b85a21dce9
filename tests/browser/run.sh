#!/usr/bin/env bash
# Browser walk-through of the demo site: installs Chromium (apt) and playwright-core
# (npm) when missing, starts webserv on free ports with a temporary copy of
# conf.d/default.conf and www/, runs walkthrough.mjs, stops the server.
#
#   tests/browser/run.sh            # or: make browser-test
#   WEBSERV_BIN=path/to/webserv tests/browser/run.sh
#
# Screenshots land in tests/browser/screenshots/ (gitignored); the server log in
# tests/browser/screenshots/server.log. Not part of `make test`: CI has no browser.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${WEBSERV_BIN:-$ROOT/target/release/webserv}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

if ! command -v chromium >/dev/null 2>&1; then
  echo "run.sh: installing chromium with apt-get" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
# Debian's /usr/bin/chromium is a wrapper script; prefer it (it sets the flags the
# distribution needs), playwright launches whatever path it is given.

if [ ! -d "$HERE/node_modules/playwright-core" ]; then
  echo "run.sh: npm install playwright-core (no browser download)" >&2
  (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
fi

if [ ! -x "$BIN" ]; then
  echo "run.sh: building $BIN" >&2
  (cd "$ROOT" && cargo build --release)
fi

# Free TCP ports on 127.0.0.1 (the kernel picks them; a tiny race is acceptable):
# the default site (two), the TLS demo (HTTPS and its plain redirect), the proxy
# demo and its WebSocket echo upstream.
read -r PORT1 PORT2 TLS_PORT REDIRECT_PORT PROXY_PORT ECHO_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

# A private copy of the site: uploads and deletions never touch the worktree.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/webserv-browser.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

cp -a "$ROOT/www" "$TMP/www"
find "$TMP/www/uploads" -mindepth 1 ! -name .gitkeep ! -name .gitignore -delete
mkdir -p "$TMP/conf.d"
sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$PORT1#g" \
    -e "s#127\.0\.0\.1:8081#127.0.0.1:$PORT2#g" \
    -e "s#\.\./www#$TMP/www#g" \
    "$ROOT/conf.d/default.conf" > "$TMP/conf.d/default.conf"
"$BIN" check "$TMP/conf.d/default.conf" >/dev/null

mkdir -p "$HERE/screenshots"
LOG="$HERE/screenshots/server.log"
# start LOG CONFIG PORT...: runs webserv on CONFIG, waits (bounded) until every
# PORT accepts.
start() {
  local log="$1" conf="$2"; shift 2
  "$BIN" "$conf" >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local port up
  for _ in $(seq 100); do
    up=1
    for port in "$@"; do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { up=0; break; }
    done
    [ "$up" = 1 ] && break
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: webserv exited; log:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "run.sh: $conf not listening on $* after 10 s" >&2; exit 1; }
  echo "run.sh: webserv (pid $pid) on $conf, ports $*" >&2
}

start "$LOG" "$TMP/conf.d/default.conf" "$PORT1" "$PORT2"

# The TLS demo with a fresh self-signed certificate (as `make cert` makes it),
# and the proxy demo with the WebSocket echo upstream behind /echo.
mkdir -p "$TMP/conf.d/tls"
(cd "$ROOT" && cargo run --release -q --example selfsigned -- "$TMP/conf.d/tls") >/dev/null
sed -e "s#8443#$TLS_PORT#g" -e "s#8480#$REDIRECT_PORT#g" -e "s#\.\./\.\./www#$TMP/www#" \
    "$ROOT/conf.d/examples/tls.conf" > "$TMP/conf.d/tls.conf"
sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$PROXY_PORT#" -e "s#127\.0\.0\.1:9010#127.0.0.1:$ECHO_PORT#" \
    -e "s#\.\./\.\./www#$TMP/www#" \
    "$ROOT/conf.d/examples/proxy.conf" > "$TMP/conf.d/proxy.conf"
"$BIN" check "$TMP/conf.d/tls.conf" >/dev/null
"$BIN" check "$TMP/conf.d/proxy.conf" >/dev/null
python3 "$ROOT/examples/ws_echo.py" "$ECHO_PORT" >"$HERE/screenshots/ws_echo.log" 2>&1 &
PIDS+=("$!")
start "$HERE/screenshots/tls.log" "$TMP/conf.d/tls.conf" "$TLS_PORT" "$REDIRECT_PORT"
start "$HERE/screenshots/proxy.log" "$TMP/conf.d/proxy.conf" "$PROXY_PORT" "$ECHO_PORT"

status=0
BASE_URL="http://127.0.0.1:$PORT1" \
SECOND_URL="http://127.0.0.1:$PORT2" \
UPLOAD_DIR="$TMP/www/uploads" \
SERVER_LOG="$LOG" \
CHROMIUM="$CHROMIUM" \
node "$HERE/walkthrough.mjs" || status=1

TLS_URL="https://localhost:$TLS_PORT" \
REDIRECT_URL="http://localhost:$REDIRECT_PORT" \
WS_URL="http://127.0.0.1:$PROXY_PORT" \
CHROMIUM="$CHROMIUM" \
node "$HERE/demos.mjs" || status=1
exit "$status"
