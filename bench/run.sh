#!/usr/bin/env bash
# bench/run.sh: webserv and nginx side by side, on the same files, in one run.
#
#   (a) 1 KiB file, keep-alive: req/s and p99 latency   wrk -t2 -c50 --latency
#   (b) 1 MiB file, keep-alive: throughput (MiB/s)       wrk -t2 -c50
#   (c) 1 KiB file, Connection: close: req/s             wrk -t2 -c50 -H 'Connection: close'
#   (d) RSS per idle keep-alive connection (KiB)         bench/idle_conns.py, /proc/PID/status
#   (e) availability under siege -b -c100                 (when siege is installed)
#
# Prints a Markdown table (with webserv/nginx ratios) and appends it, dated,
# to bench/RESULTS.md. Both servers bind 127.0.0.1 on free ports and are
# killed on exit. Environment:
#   WEBSERV_BIN     binary to test (default target/release/webserv, built if missing)
#   DURATION        seconds per wrk run (10)        SIEGE_TIME  seconds of siege (15)
#   IDLE_CONNS      idle connections for (d) (5000)
#   BENCH_SERVERS   "webserv nginx" (default), or one of them alone
#   RESULTS         file to append to (bench/RESULTS.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WEBSERV_BIN=${WEBSERV_BIN:-$REPO/target/release/webserv}
DURATION=${DURATION:-10}
SIEGE_TIME=${SIEGE_TIME:-15}
IDLE_CONNS=${IDLE_CONNS:-5000}
BENCH_SERVERS=${BENCH_SERVERS:-webserv nginx}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
START_TIMEOUT=10 # seconds for a server to accept

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites ---------------------------------------------------------

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_installed() { # ensure_installed COMMAND [PACKAGE]
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing ${2:-$1}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${2:-$1}" >/dev/null
}

ensure_installed wrk
if [[ " $BENCH_SERVERS " == *" nginx "* ]]; then ensure_installed nginx; fi
ensure_installed siege || log "siege unavailable: skipping (e)"
if [[ " $BENCH_SERVERS " == *" webserv "* && ! -x $WEBSERV_BIN ]]; then
    log "building $WEBSERV_BIN"
    (cd "$REPO" && cargo build --release)
    [ -x "$WEBSERV_BIN" ] || die "no webserv binary at $WEBSERV_BIN"
fi

# 5,000 idle connections plus the load generators need file descriptors.
want_fds=$((IDLE_CONNS + 4096))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$((IDLE_CONNS + 256))" ]; then
    IDLE_CONNS=$(($(ulimit -n) - 256))
    log "ulimit -n is $(ulimit -n): measuring $IDLE_CONNS idle connections"
fi
FDS=$(ulimit -n)

# ---- workspace, servers, cleanup ---------------------------------------------

WORK=$(mktemp -d -t webserv-bench.XXXXXX)
# nginx workers run as an unprivileged user when started as root: let them read.
chmod 755 "$WORK"
declare -A PID=() PORT=()
IDLE_PID=""

cleanup() {
    local name pid
    [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_accepting() { # wait_accepting NAME: bounded, fails if the server died
    local name=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$name]}") 2>/dev/null; do
        kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited before accepting; its last output:
$(tail -n 20 "$WORK/$name.log")"
        [ "$SECONDS" -lt "$deadline" ] || die "$name not accepting after ${START_TIMEOUT}s"
        sleep 0.05
    done
}

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
echo '<!doctype html><title>bench</title>' >"$WORK/www/index.html"
chmod -R a+rX "$WORK/www"

start_webserv() {
    PORT[webserv]=$(free_port)
    cat >"$WORK/webserv.conf" <<CONF
max_connections $((FDS - 64));
error_log stderr;
server {
    listen 127.0.0.1:${PORT[webserv]};
    root $WORK/www;
    access_log off;
}
CONF
    "$WEBSERV_BIN" "$WORK/webserv.conf" >"$WORK/webserv.log" 2>&1 &
    PID[webserv]=$!
    wait_accepting webserv
}

start_nginx() {
    PORT[nginx]=$(free_port)
    local n=$WORK/nginx
    mkdir -p "$n/tmp"
    chmod 777 "$n/tmp"
    cat >"$n/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $n/nginx.pid;
error_log $n/error.log warn;
worker_rlimit_nofile $FDS;
events { worker_connections $((FDS - 64)); }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types { text/html html; }
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    server {
        listen 127.0.0.1:${PORT[nginx]};
        root $WORK/www;
    }
}
CONF
    nginx -p "$n" -e "$n/error.log" -c "$n/nginx.conf" >"$WORK/nginx.log" 2>&1 &
    PID[nginx]=$!
    wait_accepting nginx
}

# The process that holds the connections: nginx's one worker, webserv itself.
serving_pid() {
    if [ "$1" = nginx ]; then pgrep -P "${PID[nginx]}" | head -n 1; else echo "${PID[$1]}"; fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---- measurements --------------------------------------------------------------

declare -A R=() # R[name:metric] = value

# to_ms VALUE_WITH_UNIT (wrk prints us, ms, s, m)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) print "n/a"; else printf "%.2f", n * f }'
}

# to_mib VALUE_WITH_UNIT (wrk's Transfer/sec: B, KB, MB, GB, powers of 1024)
to_mib() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "B") ? 1/1048576 : (u == "KB") ? 1/1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : -1
        if (f < 0) print "n/a"; else printf "%.1f", n * f }'
}

wrk_out() { echo "$WORK/wrk-$1-$2.txt"; } # wrk_out NAME TAG

run_wrk() { # run_wrk NAME TAG PATH [wrk args...]: output in $(wrk_out NAME TAG)
    local name=$1 tag=$2 path=$3 out
    shift 3
    out=$(wrk_out "$name" "$tag")
    log "wrk $tag on $name"
    timeout $((DURATION + 30)) wrk -t2 -c50 -d"${DURATION}s" --latency "$@" \
        "http://127.0.0.1:${PORT[$name]}$path" >"$out" 2>&1 \
        || log "wrk $tag on $name failed: $(tail -n 3 "$out")"
    # Socket errors and non-2xx answers, so that a fast failure never passes for speed.
    R[$name:$tag-errors]=$(awk '/Socket errors/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                               /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")
}

wrk_field() { # wrk_field FILE: Requests/sec | Transfer/sec | p99
    case $2 in
        rps) awk '/^Requests\/sec:/ { print $2 }' "$1" ;;
        transfer) to_mib "$(awk '/^Transfer\/sec:/ { print $2 }' "$1")" ;;
        p99) to_ms "$(awk '$1 == "99%" { print $2 }' "$1")" ;;
    esac
}

bench_wrk() {
    local name=$1
    run_wrk "$name" small /small.bin
    R[$name:small-rps]=$(wrk_field "$(wrk_out "$name" small)" rps)
    R[$name:small-p99]=$(wrk_field "$(wrk_out "$name" small)" p99)
    run_wrk "$name" big /big.bin
    R[$name:big-mib]=$(wrk_field "$(wrk_out "$name" big)" transfer)
    run_wrk "$name" close /small.bin -H 'Connection: close'
    R[$name:close-rps]=$(wrk_field "$(wrk_out "$name" close)" rps)
}

bench_memory() {
    local name=$1 pid before after ready="" deadline
    pid=$(serving_pid "$name")
    before=$(rss_kib "$pid")
    log "$IDLE_CONNS idle keep-alive connections to $name"
    python3 "$HERE/idle_conns.py" --port "${PORT[$name]}" --count "$IDLE_CONNS" \
        --timeout 60 --hold 120 >"$WORK/idle-$name.txt" 2>&1 &
    IDLE_PID=$!
    deadline=$((SECONDS + 90))
    while [ -z "$ready" ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$IDLE_PID" 2>/dev/null; do
        ready=$(awk '$1 == "ready" { print $2 }' "$WORK/idle-$name.txt" 2>/dev/null || true)
        sleep 0.1
    done
    after=$(rss_kib "$pid")
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    R[$name:idle-ok]=${ready:-0}
    if [ "${ready:-0}" -gt 0 ]; then
        R[$name:kib-per-conn]=$(awk -v a="$after" -v b="$before" -v n="$ready" 'BEGIN { printf "%.2f", (a - b) / n }')
    else
        R[$name:kib-per-conn]=n/a
    fi
    R[$name:rss-idle]=$after
}

bench_siege() {
    local name=$1 out=$WORK/siege-$name.txt
    log "siege on $name"
    timeout $((SIEGE_TIME + 30)) siege -b -c100 -t"${SIEGE_TIME}S" --no-parser \
        --log="$WORK/siege.log" "http://127.0.0.1:${PORT[$name]}/small.bin" >"$out" 2>&1 || true
    # siege 4 prints JSON ("availability": 100.00); older ones "Availability: 100.00 %".
    R[$name:siege]=$(grep -Eio '"?availability"?:[[:space:]]*[0-9.]+' "$out" | grep -Eo '[0-9.]+$' | tail -n 1)
    R[$name:siege]=${R[$name:siege]:-n/a}
}

# ---- report --------------------------------------------------------------------

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}

row() { # row LABEL METRIC
    local w=${R[webserv:$2]:-n/a} n=${R[nginx:$2]:-n/a}
    printf '| %s | %s | %s | %s |\n' "$1" "$w" "$n" "$(ratio "$w" "$n")"
}

report() {
    echo "| metric | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    row "1 KiB keep-alive, req/s (higher is better)" small-rps
    row "1 KiB keep-alive, p99 latency ms (lower is better)" small-p99
    row "1 MiB keep-alive, MiB/s (higher is better)" big-mib
    row "1 KiB Connection: close, req/s (higher is better)" close-rps
    row "idle keep-alive connections held" idle-ok
    row "RSS per idle connection, KiB (lower is better)" kib-per-conn
    row "RSS with the idle connections, KiB" rss-idle
    if command -v siege >/dev/null 2>&1; then
        row "siege -b -c100 -t${SIEGE_TIME}s availability %" siege
    fi
    row "wrk errors and non-2xx (1 KiB / 1 MiB / close)" errors
}

# ---- main ----------------------------------------------------------------------

for name in $BENCH_SERVERS; do
    case $name in
        webserv) start_webserv ;;
        nginx) start_nginx ;;
        *) die "unknown server in BENCH_SERVERS: $name" ;;
    esac
    log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"
done

# One benchmark at a time, each server in turn: they never share the CPU.
for name in $BENCH_SERVERS; do bench_memory "$name"; done
for name in $BENCH_SERVERS; do bench_wrk "$name"; done
if command -v siege >/dev/null 2>&1; then
    for name in $BENCH_SERVERS; do bench_siege "$name"; done
fi
for name in $BENCH_SERVERS; do
    R[$name:errors]="${R[$name:small-errors]} / ${R[$name:big-errors]} / ${R[$name:close-errors]}"
done

table=$(report)
echo "$table"
{
    [ -s "$RESULTS" ] || printf '# Benchmark results\n\nAppended by `bench/run.sh`; newest last.\n'
    printf '\n## %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf '%s CPUs, Linux %s, webserv %s, %s, wrk %ss per run, %s idle connections.\n\n' \
        "$(nproc)" "$(uname -r)" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //')" "$DURATION" "$IDLE_CONNS"
    echo "$table"
} >>"$RESULTS"
log "appended to $RESULTS"
