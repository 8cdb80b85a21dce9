#!/usr/bin/env bash
# bench/cgi.sh: CGI, webserv and nginx + fcgiwrap side by side, in one run.
#
#   (a) hello-world CGI in Python and in sh: req/s and p99 at 16 clients
#         wrk -t2 -c16 --latency http://.../cgi/hello.py (and hello.sh)
#       webserv: location /cgi/ { cgi .py python3; cgi .sh sh; }
#       nginx:   location ~ \.(py|sh)$ { fastcgi_pass unix:fcgiwrap.sock; ... }, with
#                fcgiwrap -c FCGI_CHILDREN (Debian's package, installed when missing;
#                the scripts run through their shebang there)
#   (b) a CGI that streams 1 GiB (head -c ... /dev/zero) to a slow client
#       (curl --limit-rate 50M): the server's peak RSS (VmHWM, reset first) and
#       the bytes received.
#
# Prints a Markdown table (with webserv/nginx ratios) and appends it, dated, to
# bench/RESULTS.md. Environment:
#   WEBSERV_BIN     binary to test (default target/release/webserv, built if missing)
#   DURATION        seconds per wrk run (10)     CLIENTS  wrk connections (16)
#   REPEAT          wrk runs per script and server, taking turns; medians reported (3)
#   FCGI_CHILDREN   fcgiwrap processes (16: as many as clients, each runs one script at a time)
#   STREAM_MIB      size of the streamed output in MiB (1024)
#   STREAM_RATE     the slow client's curl --limit-rate (50M)
#   PYTHON_CGI      interpreter of hello.py (/usr/bin/python3, else python3's real
#                   executable: a pyenv shim costs a shell script per request)
#   BENCH_SERVERS   "webserv nginx" (default), or one of them alone
#   RESULTS         file to append to (bench/RESULTS.md)
set -euo pipefail

BENCH_NAME=cgi
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-16}
REPEAT=${REPEAT:-3}
FCGI_CHILDREN=${FCGI_CHILDREN:-$CLIENTS}
STREAM_MIB=${STREAM_MIB:-1024}
STREAM_RATE=${STREAM_RATE:-50M}
BENCH_SERVERS=${BENCH_SERVERS:-webserv nginx}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
STREAM_BYTES=$((STREAM_MIB * 1048576))

ensure_installed wrk
ensure_installed curl
ensure_installed python3
if [[ " $BENCH_SERVERS " == *" nginx "* ]]; then
    ensure_installed nginx
    if ! ensure_installed fcgiwrap; then
        log "fcgiwrap does not install: measuring webserv alone"
        BENCH_SERVERS=webserv
    fi
fi
FCGIWRAP=$(command -v fcgiwrap || echo /usr/sbin/fcgiwrap)
if [ -z "${PYTHON_CGI:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON_CGI=/usr/bin/python3
    else PYTHON_CGI=$(python3 -c 'import sys; print(sys.executable)'); fi
fi
if [[ " $BENCH_SERVERS " == *" webserv "* ]]; then ensure_webserv; fi

setup_workspace
# fcgiwrap's preforked workers outlive their parent, which forks new ones
# when one dies: fcgiwrap runs in a process group of its own, stopped whole.
stop_fcgiwrap_group() {
    local pgid=${PID[fcgiwrap]:-}
    [ -n "$pgid" ] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for _ in $(seq 30); do kill -0 -- "-$pgid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}
CLEANUP_HOOKS+=(stop_sampler stop_fcgiwrap_group)

# ---- scripts -------------------------------------------------------------------

mkdir -p "$WORK/www/cgi"
cat >"$WORK/www/cgi/hello.py" <<PY
#!$PYTHON_CGI
print("Content-Type: text/plain")
print()
print("Hello, world!")
PY
cat >"$WORK/www/cgi/hello.sh" <<'SH'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nHello, world!\n'
SH
cat >"$WORK/www/cgi/stream.sh" <<SH
#!/bin/sh
printf 'Content-Type: application/octet-stream\r\n\r\n'
exec head -c $STREAM_BYTES /dev/zero
SH
chmod -R a+rX "$WORK/www"
chmod 755 "$WORK"/www/cgi/*

# ---- servers -------------------------------------------------------------------

start_webserv() {
    PORT[webserv]=$(free_port)
    cat >"$WORK/webserv.conf" <<CONF
error_log stderr;
server {
    listen 127.0.0.1:${PORT[webserv]};
    root $WORK/www;
    access_log off;
    location /cgi/ {
        cgi .py $PYTHON_CGI;
        cgi .sh sh;
    }
}
CONF
    start_webserv_conf webserv "$WORK/webserv.conf"
}

start_nginx() {
    local sock=$WORK/fcgiwrap.sock deadline=$((SECONDS + START_TIMEOUT))
    # setsid execs in place (a background job of this script leads no group):
    # fcgiwrap's pid is its process group's id.
    setsid "$FCGIWRAP" -c "$FCGI_CHILDREN" -s "unix:$sock" >"$WORK/fcgiwrap.log" 2>&1 &
    PID[fcgiwrap]=$!
    [ "$(ps -o pgid= -p "${PID[fcgiwrap]}" | tr -d ' ')" = "${PID[fcgiwrap]}" ] ||
        die "fcgiwrap is not in a process group of its own (is job control on?)"
    while [ ! -S "$sock" ]; do
        kill -0 "${PID[fcgiwrap]}" 2>/dev/null || die "fcgiwrap exited: $(tail -n 5 "$WORK/fcgiwrap.log")"
        [ "$SECONDS" -lt "$deadline" ] || die "no fcgiwrap socket after ${START_TIMEOUT}s"
        sleep 0.05
    done
    PORT[nginx]=$(free_port)
    # nginx's defaults: fastcgi_buffering on (a slow client's backlog is
    # spooled to fastcgi_temp_path, up to 1 GiB).
    NGINX_USER=1 nginx_conf "$WORK/nginx" "
    server {
        listen 127.0.0.1:${PORT[nginx]};
        root $WORK/www;
        location ~ \\.(py|sh)\$ {
            fastcgi_pass unix:$sock;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
    }"
    start_nginx_dir nginx "$WORK/nginx"
}

# ---- measurements --------------------------------------------------------------

declare -A R=()

# settle: wait (up to 30 s) until no script of an earlier run is still running,
# so that one server's leftovers never slow the other down.
settle() {
    local deadline=$((SECONDS + 30)) p parents
    while [ "$SECONDS" -lt "$deadline" ]; do
        parents=${PID[webserv]:-}
        if [ -n "${PID[fcgiwrap]:-}" ]; then
            parents+=" $({ pgrep -P "${PID[fcgiwrap]}" || true; } | tr '\n' ' ')"
        fi
        for p in $parents; do pgrep -P "$p" >/dev/null && { sleep 0.1; continue 2; }; done
        break
    done
    sleep 1
}

bench_hello() { # bench_hello NAME SCRIPT
    local name=$1 script=$2 out=$WORK/wrk-$1-$2.txt body
    local url="http://127.0.0.1:${PORT[$name]}/cgi/$script"
    body=$(timeout 10 curl -sS "$url" 2>&1 || true)
    [ "$body" = "Hello, world!" ] || log "unexpected answer from $name $script: ${body:0:200}"
    log "wrk $script on $name"
    settle
    timeout $((DURATION + 30)) wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --timeout 10s --latency "$url" >"$out" 2>&1 ||
        log "wrk $script on $name failed: $(tail -n 3 "$out")"
    # Lists, one value per run: the table shows their medians (errors: the sum).
    R[$name:$script-rps]+="$(wrk_field "$out" rps) "
    R[$name:$script-p99]+="$(wrk_field "$out" p99) "
    R[$name:$script-errors]=$((${R[$name:$script-errors]:-0} + $(wrk_errors "$out")))
    log "  -> $(wrk_field "$out" rps) req/s, p99 $(wrk_field "$out" p99) ms"
}

bench_stream() { # bench_stream NAME
    local name=$1 pid out=$WORK/stream-$1 got speed hwm
    pid=$(serving_pid "$name")
    reset_hwm "$pid" || log "cannot reset VmHWM of $pid: the peak covers the whole run"
    R[$name:stream-base]=$(rss_kib "$pid")
    sample_rss "$pid" "$out.rss"
    settle
    log "$STREAM_MIB MiB of CGI output from $name to a client reading at $STREAM_RATE/s"
    timeout $((STREAM_MIB / 10 + 120)) curl -sS -o /dev/null --limit-rate "$STREAM_RATE" \
        -w '%{http_code} %{size_download} %{speed_download}\n' \
        "http://127.0.0.1:${PORT[$name]}/cgi/stream.sh" >"$out" 2>"$out.err" || true
    stop_sampler
    hwm=$(hwm_kib "$pid")
    for v in $(cat "$out.rss" 2>/dev/null); do [ "$v" -gt "$hwm" ] && hwm=$v; done
    read -r code got speed <"$out" || { code=000; got=0; speed=0; }
    R[$name:stream-hwm]=$(kib_to_mib "$hwm")
    R[$name:stream-ok]=$([ "$code" = 200 ] && [ "$got" -eq "$STREAM_BYTES" ] && echo yes || echo "no: HTTP $code, $got bytes")
    R[$name:stream-mibs]=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }')
    log "  -> HTTP $code, $got bytes at ${R[$name:stream-mibs]} MiB/s, peak RSS $hwm KiB $(head -c 200 "$out.err")"
}

# Children left behind: zombies or scripts never reaped.
count_children() { { pgrep -P "${PID[$1]}" || true; } | wc -l; }

start_servers

# The servers take turns, REPEAT times: the machine's noise hits them alike.
for _ in $(seq "$REPEAT"); do
    for script in hello.py hello.sh; do
        for name in $BENCH_SERVERS; do bench_hello "$name" "$script"; done
    done
done
for key in "${!R[@]}"; do
    case $key in *-rps | *-p99) R[$key]=$(median ${R[$key]}) ;; esac
done
for name in $BENCH_SERVERS; do bench_stream "$name"; done
if [ -n "${PID[webserv]:-}" ]; then
    sleep 1
    R[webserv:children]=$(count_children webserv)
fi

for name in $BENCH_SERVERS; do
    R[$name:errors]="${R[$name:hello.py-errors]} + ${R[$name:hello.sh-errors]}"
done

# ---- report --------------------------------------------------------------------

table=$(
    echo "| metric | webserv | nginx + fcgiwrap | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    row "hello.py, req/s at $CLIENTS clients, median of $REPEAT (higher is better)" hello.py-rps
    row "hello.py, p99 latency ms (lower is better)" hello.py-p99
    row "hello.sh, req/s at $CLIENTS clients, median of $REPEAT (higher is better)" hello.sh-rps
    row "hello.sh, p99 latency ms (lower is better)" hello.sh-p99
    row "wrk errors and non-2xx (py + sh)" errors
    row "$STREAM_MIB MiB CGI output to a $STREAM_RATE/s client: peak RSS MiB (goal < 32)" stream-hwm
    row "  its RSS before, KiB" stream-base
    row "  all bytes received" stream-ok
    row "  client speed MiB/s" stream-mibs
    if [ -n "${R[webserv:children]:-}" ]; then row "webserv children left 1 s after the last request" children; fi
)
echo "$table"
append_results "CGI (bench/cgi.sh)" "$(machine_line "wrk ${DURATION}s per run")

\`DURATION=$DURATION REPEAT=$REPEAT CLIENTS=$CLIENTS FCGI_CHILDREN=$FCGI_CHILDREN STREAM_MIB=$STREAM_MIB STREAM_RATE=$STREAM_RATE bench/cgi.sh\`:
\`wrk -t2 -c$CLIENTS -d${DURATION}s --timeout 10s --latency\` on /cgi/hello.py (\`$PYTHON_CGI\`) and /cgi/hello.sh (\`sh\`);
\`curl --limit-rate $STREAM_RATE\` on /cgi/stream.sh. nginx runs the scripts through \`fcgiwrap -c $FCGI_CHILDREN\`.

$table"
