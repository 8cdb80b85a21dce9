# bench/lib.sh: helpers shared by bench/run.sh, bodies.sh, cgi.sh and proxy.sh.
# Source it from a script that has `set -euo pipefail`; it defines functions and
# these variables (each overridable from the environment):
#   HERE REPO     the bench/ directory and the repository
#   WEBSERV_BIN   binary to test (default target/release/webserv, built if missing)
#   RESULTS       file the results are appended to (bench/RESULTS.md)
# setup_workspace then creates $WORK (removed on exit) and the PID/PORT tables
# whose servers are stopped on exit.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WEBSERV_BIN=${WEBSERV_BIN:-$REPO/target/release/webserv}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
START_TIMEOUT=${START_TIMEOUT:-10} # seconds for a server to accept

BENCH_NAME=${BENCH_NAME:-bench}
log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites ---------------------------------------------------------

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=""
ensure_installed() { # ensure_installed COMMAND [PACKAGE]
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0 # e.g. fcgiwrap, outside a user's PATH
    log "installing ${2:-$1}"
    if [ -z "$APT_UPDATED" ]; then sudo_if_needed apt-get update -qq; APT_UPDATED=1; fi
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${2:-$1}" >/dev/null
}

ensure_webserv() {
    [ -x "$WEBSERV_BIN" ] && return 0
    log "building $WEBSERV_BIN"
    (cd "$REPO" && cargo build --release)
    [ -x "$WEBSERV_BIN" ] || die "no webserv binary at $WEBSERV_BIN"
}

# ---- workspace, servers, cleanup ---------------------------------------------

# Extra clean-up steps (function names), run before the servers are stopped.
CLEANUP_HOOKS=()

setup_workspace() {
    # Under /tmp by default: uploads land there, on the same filesystem as /tmp.
    WORK=$(mktemp -d -t "webserv-$BENCH_NAME.XXXXXX")
    # nginx workers run as an unprivileged user when started as root: let them read.
    chmod 755 "$WORK"
    declare -gA PID=() PORT=() IS_NGINX=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local hook name
    for hook in "${CLEANUP_HOOKS[@]}"; do "$hook" || true; done
    for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
    wait 2>/dev/null || true
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

# ---- placement -------------------------------------------------------------------

# Where the servers and wrk run: `placement` sets these, start_webserv_conf,
# start_nginx_dir and run_wrk use them. A script that never calls it runs
# everything on every CPU, with wrk -t2.
SERVER_PIN=() WRK_PIN=() WRK_THREADS=2 PLACEMENT_NOTE="shared: servers and wrk -t2 on every CPU"

# placement: PLACEMENT=split, the default with one worker on 2 CPUs or more,
# runs the servers on CPU 0 and wrk on the other CPUs, a thread each: neither
# takes the other's CPU. PLACEMENT=shared runs everything everywhere
# (wrk -t2), the only way when the servers have a worker per CPU.
#
# Why split: with everything shared, a server that answers faster than wrk can
# ask leaves wrk's two threads contending for the CPUs with it, and a thread
# that waits for a scheduler tick (4 ms here) delays all of its connections'
# answers; p99 then measures wrk's scheduling (bench/RESULTS.md, 2026-12-02).
placement() {
    local cpus
    cpus=$(nproc)
    if [ -z "${PLACEMENT:-}" ]; then
        if [ "${WORKERS:-1}" = 1 ] && [ "$cpus" -ge 2 ]; then PLACEMENT=split; else PLACEMENT=shared; fi
    fi
    case $PLACEMENT in
        split)
            [ "$cpus" -ge 2 ] || die "PLACEMENT=split needs 2 CPUs"
            local rest=1
            [ "$cpus" -eq 2 ] || rest="1-$((cpus - 1))"
            SERVER_PIN=(taskset -c 0)
            WRK_PIN=(taskset -c "$rest")
            WRK_THREADS=$((cpus - 1))
            PLACEMENT_NOTE="split: servers on CPU 0, wrk -t$WRK_THREADS on CPU $rest"
            ;;
        shared) ;;
        *) die "PLACEMENT is split or shared, not $PLACEMENT" ;;
    esac
    ensure_installed taskset util-linux
}

# ---- servers and wrk -----------------------------------------------------------

# start_servers: each server of BENCH_SERVERS, by the script's own
# start_webserv and start_nginx.
start_servers() {
    local name
    for name in $BENCH_SERVERS; do
        case $name in
            webserv) start_webserv ;;
            nginx) start_nginx ;;
            *) die "unknown server in BENCH_SERVERS: $name" ;;
        esac
        log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"
    done
}

# base_url NAME: where wrk sends its requests (a script over TLS redefines it).
base_url() { echo "http://127.0.0.1:${PORT[$1]}"; }

wrk_out() { echo "$WORK/wrk-$1-$2.txt"; } # wrk_out NAME TAG

# run_wrk NAME TAG PATH [wrk args...]: wrk -c50 for DURATION seconds (where
# `placement` says), its output in $(wrk_out NAME TAG); socket errors and
# non-2xx answers are added to R[NAME:TAG-errors], so that a fast failure
# never passes for speed.
run_wrk() {
    local name=$1 tag=$2 path=$3 out
    shift 3
    out=$(wrk_out "$name" "$tag")
    log "wrk $tag on $name"
    timeout $((DURATION + 30)) "${WRK_PIN[@]}" wrk -t"$WRK_THREADS" -c50 -d"${DURATION}s" --latency "$@" \
        "$(base_url "$name")$path" >"$out" 2>&1 \
        || log "wrk $tag on $name failed: $(tail -n 3 "$out")"
    R[$name:$tag-errors]=$((${R[$name:$tag-errors]:-0} + $(wrk_errors "$out")))
}

# localhost_cert: a self-signed ECDSA P-256 certificate for localhost in
# $WORK/cert.pem and $WORK/key.pem, readable by nginx's unprivileged worker.
localhost_cert() {
    ensure_installed openssl
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    chmod a+r "$WORK/key.pem"
}

# ---- counting per request ------------------------------------------------------

# count_instructions N COMMAND...: callgrind's counters of PID[server] (started
# under valgrind --callgrind-out-file=$WORK/cg.out) zeroed, COMMAND run (it
# sends N requests), then dumped: prints instructions per request.
# KEEP_CG=FILE keeps the dump.
count_instructions() {
    local n=$1 total
    shift
    callgrind_control -z "${PID[server]}" >/dev/null
    "$@"
    callgrind_control -d "${PID[server]}" >/dev/null
    total=$(awk '/^(summary|totals):/ { print $2 }' "$WORK"/cg.out.* | tail -n 1)
    if [ -n "${KEEP_CG:-}" ]; then cp "$(ls "$WORK"/cg.out.* | tail -n 1)" "$KEEP_CG"; fi
    rm -f "$WORK"/cg.out*
    awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f Ir/request", t / n }'
}

# count_syscalls N COMMAND...: strace -c on PID[server] while COMMAND sends
# N requests: prints system calls per request, in all and per call.
count_syscalls() {
    local n=$1 tracer
    shift
    strace -c -f -q -p "${PID[server]}" -o "$WORK/strace.txt" &
    tracer=$!
    sleep 1 # strace attaches; nothing is counted before the requests
    "$@"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    # Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
    awk -v n="$n" '$1 !~ /^[0-9.]+$/ { next }
         $NF == "total" { total = $4; next }
         { detail = detail sprintf(" %s=%.2f", $NF, $4 / n) }
         END { printf "%.2f syscalls/request (%s)", total / n, substr(detail, 2) }' "$WORK/strace.txt"
}

# ---- reverse proxy fronts ------------------------------------------------------

# nginx_upstream DIR PORT [HTTP_EXTRA] [SERVER_EXTRA]: an nginx serving
# $WORK/www on PORT, keep-alive without a request cap (nginx closes a client
# connection after 1000 requests by default, which would hide reuse).
nginx_upstream() {
    NGINX_USER=1 nginx_conf "$1" "
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    ${3:-}
    server {
        listen 127.0.0.1:$2;
        root $WORK/www;
        ${4:-}
    }"
}

# proxy_front_conf FILE PORT UPSTREAM_PORT: webserv proxying everything on
# PORT to the upstream (its pool keeps the connections).
proxy_front_conf() {
    cat >"$1" <<CONF
error_log stderr;
server {
    listen 127.0.0.1:$2;
    access_log off;
    location / {
        proxy_pass http://127.0.0.1:$3;
    }
}
CONF
}

# nginx_proxy_front DIR PORT UPSTREAM_PORT: the same front in nginx, with its
# usual settings for kept-alive upstream connections (HTTP/1.1, an empty
# `Connection`, `keepalive 32`).
nginx_proxy_front() {
    NGINX_USER=1 nginx_conf "$1" "
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    upstream u {
        server 127.0.0.1:$3;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$2;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
}

# ---- idle connections ------------------------------------------------------

IDLE_PID=""
stop_idle() { [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true; }
CLEANUP_HOOKS+=(stop_idle)

# measure_idle NAME WAIT [idle_conns.py options...]: opens IDLE_CONNS idle
# connections to NAME with bench/idle_conns.py, waits up to WAIT seconds for
# them all, and sets R[NAME:idle-ok] (how many were held),
# R[NAME:kib-per-conn] (the serving process's RSS growth per connection)
# and R[NAME:rss-idle] (its RSS with them).
measure_idle() {
    local name=$1 wait=$2 pid before after ready="" deadline
    shift 2
    pid=$(serving_pid "$name")
    before=$(rss_kib "$pid")
    python3 "$HERE/idle_conns.py" "$@" --port "${PORT[$name]}" --count "$IDLE_CONNS" \
        >"$WORK/idle-$name.txt" 2>&1 &
    IDLE_PID=$!
    deadline=$((SECONDS + wait))
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

# start_webserv_conf NAME CONF: webserv on $PORT[NAME] (set it first), output in $WORK/NAME.log
start_webserv_conf() {
    local name=$1 conf=$2
    "${SERVER_PIN[@]}" "$WEBSERV_BIN" "$conf" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
    wait_accepting "$name"
}

# nginx_conf DIR HTTP_BODY: an nginx.conf for $WORKERS workers (default 1) in DIR, its pid, error
# log and temporary files inside DIR, with HTTP_BODY in its http block.
# NGINX_USER=1 adds `user` = the current user (a root master would otherwise
# run its worker as nobody, which cannot write our temp dirs or sockets).
nginx_conf() {
    local dir=$1 body=$2 user=""
    mkdir -p "$dir/tmp"
    chmod 777 "$dir/tmp"
    if [ "${NGINX_USER:-0}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
        user="user $(id -un) $(id -gn);"
    fi
    cat >"$dir/nginx.conf" <<CONF
$user
worker_processes ${WORKERS:-1};
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile ${FDS:-4096};
events { worker_connections $((${FDS:-4096} - 64)); }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
$body
}
CONF
}

# start_nginx_dir NAME DIR: nginx -p DIR on $PORT[NAME], in the foreground of a background job.
start_nginx_dir() {
    local name=$1 dir=$2
    "${SERVER_PIN[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
    IS_NGINX[$name]=1
    wait_accepting "$name"
}

# The process that holds the connections: nginx's one worker, webserv itself.
serving_pid() {
    if [ -n "${IS_NGINX[$1]:-}" ]; then pgrep -P "${PID[$1]}" | head -n 1; else echo "${PID[$1]}"; fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# reset_hwm PID: restart VmHWM from the current RSS (Linux >= 4.0), so that a
# peak belongs to one measurement. Returns 1 when the kernel refuses.
reset_hwm() { echo 5 2>/dev/null >"/proc/$1/clear_refs"; }

# sample_rss PID OUT: in the background, every 50 ms, keep the highest VmRSS
# and VmHWM (KiB) seen in OUT ("rss hwm"). Its pid is in $SAMPLER; stop it with
# stop_sampler. A VmHWM that misses nothing between samples is the figure to trust.
SAMPLER=""
sample_rss() {
    local pid=$1 out=$2
    (
        max_rss=0 max_hwm=0
        while [ -r "/proc/$pid/status" ]; do
            read -r r h < <(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r + 0, h + 0 }' \
                "/proc/$pid/status" 2>/dev/null || echo "0 0")
            [ "$r" -gt "$max_rss" ] && max_rss=$r
            [ "$h" -gt "$max_hwm" ] && max_hwm=$h
            echo "$max_rss $max_hwm" >"$out.tmp" && mv -f "$out.tmp" "$out"
            sleep 0.05
        done
    ) &
    SAMPLER=$!
}
stop_sampler() {
    [ -n "$SAMPLER" ] || return 0
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
}

# ---- numbers -------------------------------------------------------------------

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

wrk_field() { # wrk_field FILE rps|transfer|p99
    case $2 in
        rps) awk '/^Requests\/sec:/ { print $2 }' "$1" ;;
        transfer) to_mib "$(awk '/^Transfer\/sec:/ { print $2 }' "$1")" ;;
        p99) to_ms "$(awk '$1 == "99%" { print $2 }' "$1")" ;;
    esac
}

wrk_errors() { # wrk_errors FILE: socket errors plus non-2xx/3xx answers
    awk '/Socket errors/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
         /Non-2xx/ { s += $NF } END { print s + 0 }' "$1"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}

median() { # median N...: of numbers; "n/a" entries are ignored
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

kib_to_mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9.]+$/) printf "%.1f", k / 1024; else print "n/a" }'; }

# ---- report --------------------------------------------------------------------

# row LABEL METRIC: a table row of R[webserv:METRIC], R[nginx:METRIC] and
# their ratio (scripts with other columns define their own).
row() {
    local w=${R[webserv:$2]:-n/a} n=${R[nginx:$2]:-n/a}
    printf '| %s | %s | %s | %s |\n' "$1" "$w" "$n" "$(ratio "$w" "$n")"
}

# take_medians PATTERN...: each R entry whose key matches a glob PATTERN
# holds one figure per round; it becomes their median, and the list moves
# to R[KEY:runs] (for `print_runs`).
take_medians() {
    local key pattern
    for key in "${!R[@]}"; do
        for pattern in "$@"; do
            # shellcheck disable=SC2053 # a glob on purpose
            if [[ $key == $pattern ]]; then
                R[$key:runs]=${R[$key]}
                R[$key]=$(median ${R[$key]})
            fi
        done
    done
}

# print_runs METRIC...: every round's figures, a line per server and metric.
print_runs() {
    local name metric
    for name in $BENCH_SERVERS; do
        for metric in "$@"; do
            printf '%s %s: %s\n' "$name" "$metric" "${R[$name:$metric:runs]:-n/a}"
        done
    done
}

# machine_line EXTRA: the one-line description of the run that heads each section.
machine_line() {
    printf '%s CPUs, Linux %s, load average %s at the start and %s at the end (1, 5, 15 min), webserv %s, %s%s.\n' \
        "$(nproc)" "$(uname -r)" "${LOAD_AT_START:-?}" "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //')" "${1:+, $1}"
}

# append_results TITLE BODY: a dated section in $RESULTS.
append_results() {
    {
        [ -s "$RESULTS" ] || printf '# Benchmark results\n\nAppended by the `bench/` scripts; newest last.\n'
        printf '\n## %s: %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$1"
        printf '%s\n' "$2"
    } >>"$RESULTS"
    log "appended to $RESULTS"
}
