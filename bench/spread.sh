#!/usr/bin/env bash
# bench/spread.sh: how evenly webserv's workers share the load, and at what
# rate, binaries alternating (A B A B ...) so that they see the same moment
# of a shared machine.
#
#   bench/spread.sh BIN... [nginx]
#
# Each binary (and nginx, named so) runs with `worker_processes 2` on a 1 KiB
# file; per run and case, wrk -t2 -c50 for DURATION seconds, then each
# worker's share is its count of write system calls (/proc/PID/io syscw)
# during the run, printed as smaller/larger (1.00: even; 0.00: one worker
# did everything), with req/s, the load average, the workers' CPU time per
# request (user + system, µs, from /proc/PID/stat: what a request costs,
# whatever else runs) and, counted by `perf stat` over both workers, system
# calls, epoll_wait calls, accept4 calls and context switches per request. Cases: keepalive, close
# (`Connection: close`), notfound (404, keep-alive). Environment:
# DURATION (5), ROUNDS (3), CASES.
set -euo pipefail

BENCH_NAME=spread
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-keepalive close notfound}
[ $# -gt 0 ] || set -- "$WEBSERV_BIN"
ensure_installed wrk
ensure_installed perf linux-perf
setup_workspace
FDS=4096
mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
chmod -R a+rX "$WORK/www"

syscw() { awk '/^syscw:/ { print $2 }' "/proc/$1/io"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime
TICK=$(getconf CLK_TCK)

one_run() { # one_run BIN CASE
    local bin=$1 case=$2 w1 w2 a1 a2 b1 b2 out args=()
    PORT[ws]=$(free_port)
    if [ "$bin" = nginx ]; then
        WORKERS=2 nginx_conf "$WORK/nginx" "
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    log_not_found off;
    server {
        listen 127.0.0.1:${PORT[ws]};
        root $WORK/www;
    }"
        start_nginx_dir ws "$WORK/nginx"
    else
        cat >"$WORK/spread.conf" <<CONF
worker_processes 2;
error_log stderr;
server {
    listen 127.0.0.1:${PORT[ws]};
    root $WORK/www;
}
CONF
        WEBSERV_BIN=$bin start_webserv_conf ws "$WORK/spread.conf"
    fi
    # Both workers up (bounded wait).
    local deadline=$((SECONDS + 10))
    while [ "$(pgrep -c -P "${PID[ws]}" || true)" -lt 2 ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    read -r w1 w2 < <(pgrep -P "${PID[ws]}" | head -n 2 | tr '\n' ' ')
    a1=$(syscw "$w1")
    a2=$(syscw "$w2")
    local t0=$(($(cpu_ticks "$w1") + $(cpu_ticks "$w2")))
    local path=/small.bin
    case $case in
        close) args=(-H 'Connection: close') ;;
        notfound) path=/missing.bin ;;
    esac
    perf stat -x, -o "$WORK/perf.txt" -p "$w1,$w2" \
        -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_accept4,context-switches &
    local perf_pid=$!
    out=$(wrk -t2 -c50 -d"${DURATION}s" "${args[@]}" "http://127.0.0.1:${PORT[ws]}$path")
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    b1=$(($(syscw "$w1") - a1))
    b2=$(($(syscw "$w2") - a2))
    local ticks=$(($(cpu_ticks "$w1") + $(cpu_ticks "$w2") - t0))
    stop_pid "${PID[ws]}"
    unset 'PID[ws]'
    awk -F, -v x="$b1" -v y="$b2" -v rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" \
        -v n="$(awk '/requests in/ { print $1 }' <<<"$out")" \
        -v load="$(cut -d' ' -f1 /proc/loadavg)" -v ticks="$ticks" -v hz="$TICK" '
        $3 ~ /sys_enter$/ { sys = $1 } $3 ~ /epoll_wait/ { ep = $1 } $3 ~ /accept4/ { acc = $1 }
        $3 ~ /context-switches/ { cs = $1 }
        END {
        lo = (x < y) ? x : y; hi = (x < y) ? y : x
        printf "share %.2f  req/s %s  load %s  per request: cpu %.1f us, syscalls %.2f epoll_wait %.2f accept4 %.2f cswitch %.2f",
            (hi > 0) ? lo / hi : 0, rps, load, ticks / hz * 1e6 / n, sys / n, ep / n, acc / n, cs / n }' "$WORK/perf.txt"
}

for round in $(seq "$ROUNDS"); do
    for case in $CASES; do
        for bin in "$@"; do
            printf 'round %s %-9s %s: %s\n' "$round" "$case" "$bin" "$(one_run "$bin" "$case")"
        done
    done
done
