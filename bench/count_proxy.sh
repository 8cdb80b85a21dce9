#!/usr/bin/env bash
# bench/count_proxy.sh: what one proxied keep-alive request costs the front,
# in counts that do not depend on what else runs on the machine: instructions
# (valgrind --tool=callgrind, Ir) and system calls (strace -c), per request.
#
#   bench/count_proxy.sh [BIN...] [nginx]     one line per front and tool
#
# The fronts and the upstream are configured as in bench/proxy.sh: one nginx
# upstream serving a 1 KiB file, webserv with `proxy_pass` to it, nginx (one
# process: master_process off) with `upstream { keepalive 32; }`,
# `proxy_http_version 1.1` and an empty `Connection`. bench/drive.py sends
# WARMUP requests on one connection, then the counters are reset, then COUNT
# requests on another, one at a time. Only the front is counted.
# Environment: COUNT (200), WARMUP (20), TOOLS ("callgrind strace"),
# STRACE_LIST=1 also prints the front's calls for the last 3 requests.
set -euo pipefail

BENCH_NAME=count_proxy
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
COUNT=${COUNT:-200}
WARMUP=${WARMUP:-20}
TOOLS=${TOOLS:-callgrind strace}
[ $# -gt 0 ] || set -- "$WEBSERV_BIN"

ensure_installed valgrind
ensure_installed strace
ensure_installed nginx
setup_workspace
mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
chmod -R a+rX "$WORK/www"

PORT[upstream]=$(free_port)
nginx_upstream "$WORK/upstream" "${PORT[upstream]}"
start_nginx_dir upstream "$WORK/upstream"

start() { # start BIN TOOL: the front under TOOL on PORT[server]
    local bin=$1 tool=$2
    PORT[server]=$(free_port)
    local cmd=("$bin" "$WORK/front.conf")
    if [ "$bin" = nginx ]; then
        nginx_proxy_front "$WORK/nginx" "${PORT[server]}" "${PORT[upstream]}"
        echo 'master_process off;' >>"$WORK/nginx/nginx.conf"
        cmd=(nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf")
    else
        proxy_front_conf "$WORK/front.conf" "${PORT[server]}" "${PORT[upstream]}"
    fi
    case $tool in
        callgrind)
            valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
                "${cmd[@]}" >"$WORK/server.log" 2>&1 &
            ;;
        strace) "${cmd[@]}" >"$WORK/server.log" 2>&1 & ;;
    esac
    PID[server]=$!
    START_TIMEOUT=60
    wait_accepting server
}

drive() { # drive N
    python3 "$HERE/drive.py" --port "${PORT[server]}" --count "$1" --mode keepalive 2>>"$WORK/drive.log"
}

measure() { # measure BIN TOOL: prints the per-request figure
    local bin=$1 tool=$2
    start "$bin" "$tool"
    drive "$WARMUP"
    case $tool in
        callgrind)
            KEEP_CG=${KEEP_CG:+$KEEP_CG.$(basename "$bin")} count_instructions "$COUNT" drive "$COUNT"
            ;;
        strace)
            count_syscalls "$COUNT" drive "$COUNT"
            if [ "${STRACE_LIST:-0}" = 1 ]; then
                strace -f -q -p "${PID[server]}" -o "$WORK/list.txt" &
                local tracer=$!
                sleep 1
                drive 3
                kill -INT "$tracer"
                wait "$tracer" 2>/dev/null || true
                printf '\n'
                cat "$WORK/list.txt"
            fi
            ;;
    esac
    stop_pid "${PID[server]}"
    unset 'PID[server]'
}

for bin in "$@"; do
    for tool in $TOOLS; do
        printf '%s proxy-keepalive %s: %s\n' "$bin" "$tool" "$(measure "$bin" "$tool")"
    done
done
sort -u "$WORK/drive.log" >&2 || true
