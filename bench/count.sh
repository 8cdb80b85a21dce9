#!/usr/bin/env bash
# bench/count.sh: what one request or one TLS handshake costs the server, in
# counts that do not depend on what else runs on the machine: instructions
# (valgrind --tool=callgrind, Ir) and system calls (strace -c), per request.
#
#   bench/count.sh [BIN...] [nginx]      one line per binary and case
#
# `nginx` measures nginx the same way (one process: master_process off), with
# the TLS settings of bench/tls.sh (both protocols, webserv's order of suites).
#
# Each binary serves a 1 KiB file on a plain and on a TLS port (one process,
# the same ECDSA P-256 certificate as bench/tls.sh); bench/drive.py sends
# WARMUP requests, then the counters are reset, then COUNT requests of each
# case, one at a time:
#   tls-close      a new TLS connection per request (`Connection: close`)
#   tls-keepalive  COUNT requests on one TLS connection
#   plain-close, plain-keepalive   the same over plain HTTP
#   plain-notfound  COUNT requests for a missing file on one connection (404)
# TOOLS=load counts system calls under wrk -t2 -c50 instead (LOAD_SECS
# seconds, `perf stat` on the syscall tracepoints): per request, as a busy
# server pays them.
# Environment: COUNT (200), WARMUP (20), CASES (all five), TOOLS
# ("callgrind strace"; or load), LOAD_SECS (4). Nothing is appended to
# RESULTS.md: paste what matters.
set -euo pipefail

BENCH_NAME=count
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
COUNT=${COUNT:-200}
WARMUP=${WARMUP:-20}
CASES=${CASES:-tls-close tls-keepalive plain-close plain-keepalive plain-notfound}
TOOLS=${TOOLS:-callgrind strace}
LOAD_SECS=${LOAD_SECS:-4}
# Every call (the first), then the ones a request path makes.
LOAD_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendfile64,syscalls:sys_enter_openat,syscalls:sys_enter_newfstatat,syscalls:sys_enter_statx,syscalls:sys_enter_close,syscalls:sys_enter_accept4,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_setsockopt,syscalls:sys_enter_shutdown,syscalls:sys_enter_write
[ $# -gt 0 ] || set -- "$WEBSERV_BIN"

ensure_installed valgrind
ensure_installed strace
setup_workspace
mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
chmod -R a+rX "$WORK/www"
localhost_cert

start() { # start BIN TOOL: the server under TOOL, ports in PORT[plain], PORT[tls]
    local bin=$1 tool=$2
    PORT[plain]=$(free_port)
    PORT[tls]=$(free_port)
    cat >"$WORK/count.conf" <<CONF
error_log stderr;
server {
    listen 127.0.0.1:${PORT[plain]};
    root $WORK/www;
}
server {
    listen 127.0.0.1:${PORT[tls]} ssl;
    server_name localhost;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    root $WORK/www;
}
CONF
    local cmd=("$bin" "$WORK/count.conf")
    if [ "$bin" = nginx ]; then
        nginx_conf "$WORK/nginx" "
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384;
    server {
        listen 127.0.0.1:${PORT[plain]};
        root $WORK/www;
    }
    server {
        listen 127.0.0.1:${PORT[tls]} ssl;
        server_name localhost;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/www;
    }"
        echo 'master_process off;' >>"$WORK/nginx/nginx.conf"
        cmd=(nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf")
    fi
    case $tool in
        callgrind)
            valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
                "${cmd[@]}" >"$WORK/server.log" 2>&1 &
            ;;
        strace | load) "${cmd[@]}" >"$WORK/server.log" 2>&1 & ;;
    esac
    PID[server]=$!
    START_TIMEOUT=60
    PORT[server]=${PORT[plain]}
    wait_accepting server
    PORT[server]=${PORT[tls]}
    wait_accepting server
}

drive() { # drive CASE N
    local mode=${1#*-} path=/small.bin
    [ "$mode" = notfound ] && mode=keepalive path=/missing.bin
    local flags=(--port "${PORT[${1%%-*}]}" --count "$2" --mode "$mode" --path "$path")
    [ "${1%%-*}" = tls ] && flags+=(--tls)
    python3 "$HERE/drive.py" "${flags[@]}" 2>>"$WORK/drive.log"
}

measure() { # measure BIN TOOL CASE: prints the per-request figure
    local bin=$1 tool=$2 case=$3
    start "$bin" "$tool"
    drive "$case" "$WARMUP"
    case $tool in
        callgrind) count_instructions "$COUNT" drive "$case" "$COUNT" ;;
        strace) count_syscalls "$COUNT" drive "$case" "$COUNT" ;;
        load)
            # Under wrk -t2 -c50 (keep-alive, or close for the close cases)
            # rather than one request at a time: a wait then reports many
            # sockets, so this is what a busy server pays per request.
            local url args=() path=/small.bin
            [ "${case#*-}" = notfound ] && path=/missing.bin
            [ "${case#*-}" = close ] && args=(-H 'Connection: close')
            url="http://127.0.0.1:${PORT[plain]}$path"
            [ "${case%%-*}" = tls ] && url="https://localhost:${PORT[tls]}$path"
            perf stat -x, -o "$WORK/perf.txt" -e "$LOAD_EVENTS" -p "${PID[server]}" &
            local counter=$!
            sleep 0.5
            wrk -t2 -c50 -d"${LOAD_SECS}s" "${args[@]}" "$url" >"$WORK/wrk.txt" 2>&1
            kill -INT "$counter"
            wait "$counter" 2>/dev/null || true
            local requests
            requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
            awk -F, -v n="$requests" '$3 ~ /sys_enter/ {
                    name = $3; sub(/^.*sys_enter_?/, "", name)
                    if (name == "") total = $1; else if ($1 > 0) detail = detail sprintf(" %s=%.2f", name, $1 / n) }
                 END { printf "%.2f syscalls/request under load, %d requests (%s)", total / n, n, substr(detail, 2) }' "$WORK/perf.txt"
            ;;
    esac
    stop_pid "${PID[server]}"
    unset 'PID[server]'
}

for bin in "$@"; do
    for case in $CASES; do
        for tool in $TOOLS; do
            printf '%s %s %s: %s\n' "$bin" "$case" "$tool" "$(measure "$bin" "$tool" "$case")"
        done
    done
done
sort -u "$WORK/drive.log" >&2 || true
