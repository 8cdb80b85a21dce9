#!/usr/bin/env bash
# bench/run.sh: webserv and nginx side by side, on the same files, in one run.
#
#   (a) 1 KiB file, keep-alive: req/s and p99 latency   wrk -c50 --latency
#   (b) 1 MiB file, keep-alive: throughput (MiB/s)       wrk -c50
#   (c) 1 KiB file, Connection: close: req/s             wrk -c50 -H 'Connection: close'
#   (d) RSS per idle keep-alive connection (KiB)         bench/idle_conns.py, /proc/PID/status
#   (e) availability under siege -b -c100                 (when siege is installed)
#   (f) a missing file (404), keep-alive: req/s and p99  wrk -c50 --latency
#   (g) 1 KiB file at equal load: p99 latency            wrk -c50 -s bench/paced.lua
#       (each connection paced to a request per 2 ms, the same load for both)
#
# With one worker (the default) the servers run on CPU 0 and wrk (-t1) on the
# other CPU: PLACEMENT=split, see `placement` in bench/lib.sh. PLACEMENT=shared
# runs everything on every CPU with wrk -t2, as before 2026-12-02.
# WORKERS=auto (or N) runs both servers with `worker_processes auto` (or N),
# always shared: then (d) and (e), which watch one serving process, are left out.
# Prints a Markdown table (with webserv/nginx ratios) and appends it, dated,
# to bench/RESULTS.md. Both servers bind 127.0.0.1 on free ports and are
# killed on exit. Environment:
#   WEBSERV_BIN     binary to test (default target/release/webserv, built if missing)
#   DURATION        seconds per wrk run (10)        SIEGE_TIME  seconds of siege (15)
#   IDLE_CONNS      idle connections for (d) (5000)
#   BENCH_SERVERS   "webserv nginx" (default), or one of them alone
#   RESULTS         file to append to (bench/RESULTS.md)
#   WORKERS         worker_processes on both sides (1)
#   PLACEMENT       split or shared (split with one worker, else shared)
#   REPEAT          wrk rounds, the servers taking turns in each; the table
#                   shows medians (errors: the sum) (3)
#   NGINX_EXTRA     more nginx http-level directives, e.g.
#                   'open_file_cache max=10000;' (none: nginx's defaults)
set -euo pipefail

BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
SIEGE_TIME=${SIEGE_TIME:-15}
IDLE_CONNS=${IDLE_CONNS:-5000}
BENCH_SERVERS=${BENCH_SERVERS:-webserv nginx}
WORKERS=${WORKERS:-1}
REPEAT=${REPEAT:-3}
placement
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- prerequisites ---------------------------------------------------------

ensure_installed wrk
if [[ " $BENCH_SERVERS " == *" nginx "* ]]; then ensure_installed nginx; fi
ensure_installed siege || log "siege unavailable: skipping (e)"
if [[ " $BENCH_SERVERS " == *" webserv "* ]]; then ensure_webserv; fi

# 5,000 idle connections plus the load generators need file descriptors.
want_fds=$((IDLE_CONNS + 4096))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$((IDLE_CONNS + 256))" ]; then
    IDLE_CONNS=$(($(ulimit -n) - 256))
    log "ulimit -n is $(ulimit -n): measuring $IDLE_CONNS idle connections"
fi
FDS=$(ulimit -n)

# ---- workspace, servers, cleanup ---------------------------------------------

setup_workspace

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
echo '<!doctype html><title>bench</title>' >"$WORK/www/index.html"
chmod -R a+rX "$WORK/www"

start_webserv() {
    PORT[webserv]=$(free_port)
    cat >"$WORK/webserv.conf" <<CONF
worker_processes $WORKERS;
max_connections $((FDS - 64));
error_log stderr;
server {
    listen 127.0.0.1:${PORT[webserv]};
    root $WORK/www;
    access_log off;
}
CONF
    start_webserv_conf webserv "$WORK/webserv.conf"
}

start_nginx() {
    PORT[nginx]=$(free_port)
    nginx_conf "$WORK/nginx" "
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    log_not_found off;
    ${NGINX_EXTRA:-}
    types { text/html html; }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        root $WORK/www;
    }"
    start_nginx_dir nginx "$WORK/nginx"
}

# ---- measurements --------------------------------------------------------------

declare -A R=() # R[name:metric] = value

# One round of the four wrk runs on one server. Each figure is appended to a
# list, one value per round: the table shows their medians.
bench_wrk() {
    local name=$1
    run_wrk "$name" small /small.bin
    R[$name:small-rps]+="$(wrk_field "$(wrk_out "$name" small)" rps) "
    R[$name:small-p99]+="$(wrk_field "$(wrk_out "$name" small)" p99) "
    run_wrk "$name" big /big.bin
    R[$name:big-mib]+="$(wrk_field "$(wrk_out "$name" big)" transfer) "
    run_wrk "$name" close /small.bin -H 'Connection: close'
    R[$name:close-rps]+="$(wrk_field "$(wrk_out "$name" close)" rps) "
    run_wrk "$name" notfound /missing.bin
    R[$name:notfound-rps]+="$(wrk_field "$(wrk_out "$name" notfound)" rps) "
    R[$name:notfound-p99]+="$(wrk_field "$(wrk_out "$name" notfound)" p99) "
    run_wrk "$name" paced /small.bin -s "$HERE/paced.lua"
    R[$name:paced-rps]+="$(wrk_field "$(wrk_out "$name" paced)" rps) "
    R[$name:paced-p99]+="$(wrk_field "$(wrk_out "$name" paced)" p99) "
}

bench_memory() {
    log "$IDLE_CONNS idle keep-alive connections to $1"
    measure_idle "$1" 90 --timeout 60 --hold 120
}

bench_siege() {
    local name=$1 out=$WORK/siege-$name.txt
    log "siege on $name"
    timeout -k 10 $((SIEGE_TIME + 30)) siege -b -c100 -t"${SIEGE_TIME}S" --no-parser \
        --log="$WORK/siege.log" "http://127.0.0.1:${PORT[$name]}/small.bin" >"$out" 2>&1 || true
    # siege 4 prints JSON ("availability": 100.00); older ones "Availability: 100.00 %".
    R[$name:siege]=$(grep -Eio '"?availability"?:[[:space:]]*[0-9.]+' "$out" | grep -Eo '[0-9.]+$' | tail -n 1 || true)
    R[$name:siege]=${R[$name:siege]:-n/a}
}

# ---- report --------------------------------------------------------------------

report() {
    echo "| metric | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    local of="median of $REPEAT"
    row "1 KiB keep-alive, req/s, $of (higher is better)" small-rps
    row "1 KiB keep-alive, p99 latency ms, $of (lower is better)" small-p99
    row "1 MiB keep-alive, MiB/s, $of (higher is better)" big-mib
    row "1 KiB Connection: close, req/s, $of (higher is better)" close-rps
    row "404 keep-alive, req/s, $of (higher is better)" notfound-rps
    row "404 keep-alive, p99 latency ms, $of (lower is better)" notfound-p99
    row "1 KiB at equal load (paced), req/s, $of (the same for both)" paced-rps
    row "1 KiB at equal load (paced), p99 latency ms, $of (lower is better)" paced-p99
    if [ "$WORKERS" = 1 ]; then
        row "idle keep-alive connections held" idle-ok
        row "RSS per idle connection, KiB (lower is better)" kib-per-conn
        row "RSS with the idle connections, KiB" rss-idle
        if command -v siege >/dev/null 2>&1; then
            row "siege -b -c100 -t${SIEGE_TIME}s availability %" siege
        fi
    fi
    row "wrk errors and non-2xx, all rounds (1 KiB / 1 MiB / close)" errors
}

# ---- main ----------------------------------------------------------------------

start_servers

# One benchmark at a time, each server in turn: they never share the CPU.
if [ "$WORKERS" = 1 ]; then
    for name in $BENCH_SERVERS; do bench_memory "$name"; done
fi
# The servers take turns, REPEAT times: the machine's noise hits them alike.
for _ in $(seq "$REPEAT"); do
    for name in $BENCH_SERVERS; do bench_wrk "$name"; done
done
take_medians '*-rps' '*-p99' '*-mib'
if [ "$WORKERS" = 1 ] && command -v siege >/dev/null 2>&1; then
    for name in $BENCH_SERVERS; do bench_siege "$name"; done
fi
for name in $BENCH_SERVERS; do
    R[$name:errors]="${R[$name:small-errors]} / ${R[$name:big-errors]} / ${R[$name:close-errors]}"
done

table=$(report)
echo "$table"
append_results "static files, worker_processes $WORKERS (bench/run.sh)" "$(machine_line "wrk ${DURATION}s per run, $IDLE_CONNS idle connections, $PLACEMENT_NOTE")

\`WORKERS=$WORKERS PLACEMENT=$PLACEMENT REPEAT=$REPEAT DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS NGINX_EXTRA='${NGINX_EXTRA:-}' bench/run.sh\`

$table

Every round, in order:

\`\`\`
$(print_runs small-rps small-p99 big-mib close-rps notfound-rps notfound-p99 paced-rps paced-p99)
\`\`\`"
