#!/usr/bin/env bash
# Runs the load scenarios against rtmpd and nginx-rtmp, side by side, with the same
# load in the same run, and prints each server's numbers and the ratio rtmpd/nginx.
#
#   scripts/bench.sh                 # all five scenarios, 15 s measured each (~5 min)
#   scripts/bench.sh --quick         # smoke run: fewer players, 5 s windows (~2 min)
#   scripts/bench.sh --only 1,5      # some scenarios only
#   scripts/bench.sh --servers rtmpd # one server only
#   RTMPD_ARGS="--merge-writes-ms 0" scripts/bench.sh --only 1
#
# Scenarios (full / --quick):
#   1. 1 publisher at 2500 kbit/s -> 500 players            (100)
#   2. 1 publisher at 2500 kbit/s -> 2000 players           (300)
#   3. 1 publisher at 500 kbit/s  -> 5000 players           (500)
#   4. 200 publishers at 1000 kbit/s x 2 players each        (50 x 2)
#   5. churn: 64 workers connect, play to the first frame and disconnect in a loop,
#      against 1 publisher at 500 kbit/s                     (16 workers)
#
# Each server is started fresh for each scenario on a free loopback port (so peak
# RSS is per scenario) and stopped afterwards; rtmpd from this tree's release
# build, nginx-rtmp from Debian's nginx + libnginx-mod-rtmp (installed if missing)
# with a generated minimal config. Every run's JSON, the notes and the ratios are
# kept in scripts/results/bench-DATE-{full,quick}.json; `target/release/rtmpd-bench
# compare FILE` prints that file's table again.
#
# Environment: RTMPD_ARGS (extra rtmpd flags), BENCH_DURATION / BENCH_WARMUP
# (seconds), BENCH_ARGS (extra rtmpd-bench flags for every run).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
only=""
servers="rtmpd,nginx"
while (($# > 0)); do
    case $1 in
    --quick) quick=1 ;;
    --only) only=$2; shift ;;
    --servers) servers=$2; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "bench.sh: $*" >&2; }
notes=()
note() { log "$*"; notes+=("$*"); }

if ((quick)); then
    duration=${BENCH_DURATION:-5}
    warmup=${BENCH_WARMUP:-2}
    players=(100 300 500 50 16)
else
    duration=${BENCH_DURATION:-15}
    warmup=${BENCH_WARMUP:-3}
    players=(500 2000 5000 200 64)
fi

# --- limits -----------------------------------------------------------------
# 5000 players are 5000 sockets and threads here and as many again in rtmpd
# (one thread per connection).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -u unlimited 2>/dev/null || ulimit -u "$(ulimit -Hu)" 2>/dev/null || true
nofile=$(ulimit -n)
nproc_limit=$(ulimit -u)
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
log "limits: open files $nofile, processes/threads $nproc_limit, pid_max $pid_max"

# Whether N players fit the limits: fds per process (1 per connection in each),
# threads for both together (1 per connection in rtmpd, 1 per player here).
fits() {
    local n=$1
    local fds=$((n + 200)) threads=$((2 * n + 500))
    [[ $nofile == unlimited || $nofile -ge $fds ]] || return 1
    [[ $nproc_limit == unlimited || $nproc_limit -ge $threads ]] || return 1
    ((pid_max >= threads))
}

# --- build ------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-target}
log "building rtmpd and rtmpd-bench (release)"
# The server is the root package, the load generator the `bench/` workspace member;
# both land in the workspace's one target directory.
cargo build --quiet --release -p rtmpd --bin rtmpd -p rtmpd-bench --bin rtmpd-bench
rtmpd_bin=$target/release/rtmpd
bench_bin=$target/release/rtmpd-bench

# --- nginx-rtmp -------------------------------------------------------------
nginx_module=""
if [[ ,$servers, == *,nginx,* ]]; then
    if ! command -v nginx >/dev/null 2>&1 || ! compgen -G "/usr/*/nginx/modules/ngx_rtmp_module.so" >/dev/null; then
        log "installing nginx and libnginx-mod-rtmp"
        sudo=()
        if [[ $(id -u) -ne 0 ]]; then
            sudo=(sudo)
        fi
        ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
        ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends nginx libnginx-mod-rtmp >/dev/null ||
            log "could not install nginx-rtmp"
    fi
    for so in /usr/lib/nginx/modules/ngx_rtmp_module.so /usr/share/nginx/modules/ngx_rtmp_module.so; do
        if [[ -f $so ]]; then
            nginx_module=$so
            break
        fi
    done
    if ! command -v nginx >/dev/null 2>&1 || [[ -z $nginx_module ]]; then
        note "nginx-rtmp is not available: its runs are skipped"
        servers=${servers//nginx/}
    else
        note "nginx-rtmp: $(nginx -v 2>&1 | sed 's/^nginx version: //'), module $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?'), one single-threaded process (master_process off, worker_processes 1: nginx-rtmp live streams only work within one worker), so it uses at most 1 of the $(nproc) cores while rtmpd's threads use all; the bench's own players share the same cores with both"
    fi
fi

# --- results ----------------------------------------------------------------
# Each run's JSON goes to a folder under scripts/results at once (kept if the
# script dies), and is merged into one file with the notes and ratios at the end.
kind=full
if ((quick)); then
    kind=quick
fi
stamp=$(date +%Y%m%d-%H%M%S)
out=scripts/results/bench-$stamp-$kind.json
runs_dir=scripts/results/bench-$stamp-$kind.runs
mkdir -p "$runs_dir"

# --- servers ----------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/rtmpd-bench.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 1 100); do
        # $BASHPID: each $(free_port) subshell draws differently.
        p=$((20000 + (RANDOM + BASHPID * 7919) % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo "bench.sh: no free port found" >&2
    return 1
}

wait_listening() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_server NAME PORT: sets server_pid.
start_server() {
    local name=$1 port=$2
    case $name in
    rtmpd)
        # shellcheck disable=SC2086  # RTMPD_ARGS is a list of flags
        RUST_LOG=warn "$rtmpd_bin" --listen "127.0.0.1:$port" --http off \
            --max-connections 30000 ${RTMPD_ARGS:-} >"$work/rtmpd-$port.log" 2>&1 &
        server_pid=$!
        ;;
    nginx)
        local dir=$work/nginx-$port
        mkdir -p "$dir"
        local rlimit=$nofile
        [[ $rlimit == unlimited ]] && rlimit=65536
        cat >"$dir/nginx.conf" <<EOF
load_module $nginx_module;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $rlimit;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((rlimit - 100)); }
rtmp {
    server {
        listen 127.0.0.1:$port;
        chunk_size 4096;
        application live { live on; }
    }
}
EOF
        nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
        server_pid=$!
        ;;
    esac
    if ! wait_listening "$port"; then
        log "$name did not start listening on 127.0.0.1:$port"
        tail -5 "$work"/*"$port"*.log "$work/nginx-$port/error.log" 2>/dev/null >&2 || true
        stop_server
        return 1
    fi
}

stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}

server_label() {
    case $1 in
    rtmpd) echo rtmpd ;;
    nginx) echo nginx-rtmp ;;
    esac
}

results=()
# scenario ID LABEL PLAYERS_NEEDED BENCH_ARGS...
scenario() {
    local id=$1 label=$2 need=$3
    shift 3
    if [[ -n $only && ,$only, != *,$id,* ]]; then
        return
    fi
    if ! fits "$need"; then
        note "scenario $id ($label) skipped: $need players need about $((need + 200)) open files per process and $((2 * need + 500)) threads; this machine allows $nofile files, $nproc_limit processes, pid_max $pid_max"
        return
    fi
    local s
    for s in ${servers//,/ }; do
        local port name json
        port=$(free_port)
        name=$(server_label "$s")
        json=$runs_dir/$id-$s.json
        log "scenario $id on $name (port $port): $label"
        if ! start_server "$s" "$port"; then
            note "scenario $id: $name could not be started"
            continue
        fi
        # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
        if "$bench_bin" run --url "rtmp://127.0.0.1:$port/live/bench" --label "$id. $label" \
            --server-name "$name" --server-pid "$server_pid" --duration "$duration" \
            --warmup "$warmup" --json "$json" "$@" ${BENCH_ARGS:-}; then
            results+=("$json")
        else
            note "scenario $id on $name failed (see above)"
        fi
        if [[ $s == rtmpd ]] && grep -q . "$work/rtmpd-$port.log" 2>/dev/null; then
            log "rtmpd logged $(grep -c WARN "$work/rtmpd-$port.log" || true) warning(s); the last: $(tail -1 "$work/rtmpd-$port.log" | cut -c1-300)"
        fi
        stop_server
    done
}

note "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), loadavg at start $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine competes with both servers alike)"
if [[ -n ${RTMPD_ARGS:-} ]]; then
    note "rtmpd started with: $RTMPD_ARGS"
fi

p=("${players[@]}")
scenario 1 "1 publisher 2500 kbit/s -> ${p[0]} players" "${p[0]}" \
    --publishers 1 --players "${p[0]}" --bitrate 2500
scenario 2 "1 publisher 2500 kbit/s -> ${p[1]} players" "${p[1]}" \
    --publishers 1 --players "${p[1]}" --bitrate 2500
scenario 3 "1 publisher 500 kbit/s -> ${p[2]} players" "${p[2]}" \
    --publishers 1 --players "${p[2]}" --bitrate 500 --audio 64
scenario 4 "${p[3]} publishers 1000 kbit/s x 2 players" "$((p[3] * 3))" \
    --publishers "${p[3]}" --players 2 --bitrate 1000 --audio 64
scenario 5 "churn: ${p[4]} workers connect/play/leave, 500 kbit/s" "${p[4]}" \
    --publishers 1 --players 0 --churn "${p[4]}" --bitrate 500 --audio 64

note "loadavg at end $(cut -d' ' -f1-3 /proc/loadavg)"
if ((${#results[@]} == 0)); then
    log "no scenario produced a result"
    exit 1
fi
note_args=()
for n in "${notes[@]}"; do
    note_args+=(--note "$n")
done
echo
echo "==== rtmpd vs nginx-rtmp ($kind run, ${duration} s windows) ===="
"$bench_bin" compare --json "$out" "${note_args[@]}" "${results[@]}"
rm -r "$runs_dir"
echo "raw JSON: $out"
