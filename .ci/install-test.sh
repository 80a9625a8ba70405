#!/usr/bin/env bash
# The install path of README.md, tested end to end:
#
# 1. the README's own install commands (Installation and Running), run as written except that
#    `sudo` is dropped and /usr and /etc mean <scratch root>/usr and <scratch root>/etc;
# 2. the unit's ExecStartPre and ExecStart command lines, read from the installed unit, run as the
#    unit's User= and Group= the way systemd would (environment file read by root, working
#    directory, umask, no new privileges, no capabilities, and the unit's system call filter,
#    address families and W^X memory through seccomp: .ci/unit-sandbox.py) against a
#    Kafka-protocol broker (the demo's embedded one, `examples/embedded_kafka.rs`, reached by
#    host name) and a DogStatsD Unix socket standing in for the Agent's: check-config exits 0,
#    run forwards every message and exits 0 on SIGTERM;
# 3. `systemd-analyze verify` on the installed unit, and its exposure score under 3.0;
# 4. the installed binary's size, against what the README says.
#
# Runs as root (it creates the unit's user if the machine lacks it, as the Agent's installer
# would). Needs cargo, python3 (one the unit's user can run too), setpriv (util-linux),
# systemd-analyze and libseccomp (Debian: systemd).
set -euo pipefail
cd "$(dirname "$0")/.."

UNIT_FILE=systemd/algorithmia-datadog.service
MAX_EXPOSURE=3.0
MESSAGES=1000

fail() { echo "install test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root"
for tool in cargo python3 setpriv systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

WORK=$(mktemp -d)
ROOT=$WORK/root
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

unit_value() { sed -n "s/^$1=//p" "$UNIT_FILE" | tail -n 1; }
SERVICE_USER=$(unit_value User)
SERVICE_GROUP=$(unit_value Group)
[ -n "$SERVICE_USER" ] && [ -n "$SERVICE_GROUP" ] || fail "$UNIT_FILE names no User= and Group="

echo "-- the service's user: $SERVICE_USER:$SERVICE_GROUP"
getent group "$SERVICE_GROUP" >/dev/null || groupadd --system "$SERVICE_GROUP"
id -u "$SERVICE_USER" >/dev/null 2>&1 ||
    useradd --system --gid "$SERVICE_GROUP" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$SERVICE_USER"

echo "-- what a host with the Datadog Agent already has, under $ROOT"
install -d -m 0755 "$WORK" "$ROOT" "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" \
    "$ROOT/usr/lib/systemd" "$ROOT/var/run"
install -d -m 0755 -o "$SERVICE_USER" -g "$SERVICE_GROUP" "$ROOT/var/run/datadog"
# systemd-analyze verify resolves the unit's dependencies against the root's system units.
cp -a /usr/lib/systemd/system "$ROOT/usr/lib/systemd/"

echo "-- README.md's install commands"
readme_commands() {
    # Indented command lines of the Installation and Running sections.
    awk '/^### Installation/ || /^### Running/ { on = 1; next }
         /^#/ { on = 0 }
         on && /^    (cargo build|sudo |echo .*\| *sudo )/ { sub(/^    /, ""); print }' README.md
}
ran=0
while IFS= read -r line; do
    case "$line" in
        *systemctl*) echo "   (skipped: $line)"; continue ;;
    esac
    command=$(printf '%s\n' "$line" | sed -E \
        -e 's/(^|[|;&] *)sudo /\1/g' \
        -e "s#(^|[ =])/(usr|etc)/#\\1$ROOT/\\2/#g")
    echo "   \$ $command"
    bash -euo pipefail -c "$command"
    ran=$((ran + 1))
done < <(readme_commands)
[ "$ran" -ge 6 ] || fail "found only $ran install commands in README.md"

CONFIG=$ROOT/etc/algorithmia-datadog/conf.d/algorithmia.yaml
UNIT=$ROOT/etc/systemd/system/$(basename "$UNIT_FILE")
BINARY=$ROOT/usr/local/bin/algorithmia-datadog
ENV_FILE=$ROOT/etc/algorithmia-datadog/env
for file in "$CONFIG" "$UNIT" "$BINARY" "$ENV_FILE"; do
    [ -f "$file" ] || fail "the README's commands did not install $file"
done
[ "$(stat -c '%a %U' "$ENV_FILE")" = "600 root" ] ||
    fail "the environment file holds secrets: $(stat -c '%a %U:%G' "$ENV_FILE"), not 600 root"

echo "-- the installed binary"
size=$(stat -c %s "$BINARY")
size_mb=$(( (size + 524288) / 1048576 ))
documented_mb=$(tr '\n' ' ' < README.md | sed -nE 's/.*release binary is about ([0-9]+) MB.*/\1/p')
echo "   $size bytes ($size_mb MiB); README.md says about ${documented_mb:-?} MB"
[ -n "$documented_mb" ] || fail "README.md does not say how large the release binary is"
python3 - "$size" "$documented_mb" <<'EOF' || fail "README.md's binary size is off"
import sys
size, documented = int(sys.argv[1]), int(sys.argv[2]) * 1_000_000
sys.exit(0 if abs(size - documented) <= 0.25 * documented else 1)
EOF

install -m 0644 .ci/unit-sandbox.py "$WORK/unit-sandbox.py"

echo "-- a Kafka broker (the demo's embedded one) with $MESSAGES messages"
cargo build --quiet --example embedded_kafka
target/debug/examples/embedded_kafka insights "$MESSAGES" >"$WORK/broker.out" 2>"$WORK/broker.err" &
pids+=($!)
for _ in $(seq 600); do
    [ -s "$WORK/broker.out" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$WORK/broker.err" >&2; fail "the broker died"; }
    sleep 0.1
done
BROKER=$(head -n 1 "$WORK/broker.out")
[ -n "$BROKER" ] || fail "the broker did not start"
# By name, as in production: resolving it must work inside the unit's sandbox.
BROKER=localhost:${BROKER##*:}
echo "   $BROKER"

echo "-- the Agent's DogStatsD socket"
SOCKET=$ROOT/var/run/datadog/dsd.socket
python3 - "$SOCKET" "$SERVICE_USER" "$SERVICE_GROUP" "$WORK/received" <<'EOF' &
import os, shutil, socket, sys
path, user, group, out = sys.argv[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(path)
shutil.chown(path, user, group)
os.chmod(path, 0o722)  # as the Agent creates it
with open(out, "a") as f:
    while True:
        f.write(s.recv(65536).decode() + "\n")
        f.flush()
EOF
pids+=($!)
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || fail "no socket at $SOCKET"

echo "-- the configuration, edited as README.md says (broker, socket, start at the beginning)"
installed_as=$(stat -c '%a %U:%G' "$CONFIG")
echo "   installed as $installed_as"
sed -i -E \
    -e "s#^  - kafka_broker: .*#  - kafka_broker: \"$BROKER\"#" \
    -e "s#^    \# dogstatsd_url: unix://.*#    dogstatsd_url: unix://$SOCKET#" \
    -e 's/^    # start_offset: latest/    start_offset: earliest/' "$CONFIG"
[ "$(stat -c '%a %U:%G' "$CONFIG")" = "$installed_as" ] || fail "editing changed the file's mode"

# The unit's command lines, as systemd runs them: its user and group, environment (the
# environment file is read by root), working directory and umask, no new privileges, no
# capabilities, then the unit's seccomp filters.
in_root() { sed -E "s#(^|[ =])/(usr|etc|var)/#\\1$ROOT/\\2/#g"; }
service_env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
while IFS= read -r assignment; do service_env+=("$assignment"); done < <(unit_value Environment)
env_file=$(unit_value EnvironmentFile | sed 's/^-//' | in_root)
if [ -f "$env_file" ]; then
    while IFS= read -r assignment; do
        case "$assignment" in ''|'#'*|';'*) continue ;; esac
        service_env+=("$assignment")
    done < "$env_file"
fi
workdir=$(unit_value WorkingDirectory | in_root)
umask_value=$(unit_value UMask)
# Call it in a subshell: it becomes the service process.
as_service() {
    cd "$workdir"
    umask "${umask_value:-0022}"
    exec setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_GROUP" --init-groups \
        --no-new-privs --inh-caps=-all --bounding-set=-all \
        env -i "${service_env[@]}" python3 "$WORK/unit-sandbox.py" "$UNIT" "$@"
}
setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_GROUP" --init-groups \
    env -i "${service_env[0]}" python3 -c 'import ctypes' ||
    fail "$SERVICE_USER cannot run python3 (Debian: apt-get install python3)"
read -ra exec_start_pre <<< "$(unit_value ExecStartPre | in_root)"
read -ra exec_start <<< "$(unit_value ExecStart | in_root)"

echo "-- ExecStartPre as $SERVICE_USER: ${exec_start_pre[*]}"
(as_service "${exec_start_pre[@]}") >"$WORK/check.out" 2>"$WORK/check.err" || {
    cat "$WORK/check.err" >&2
    fail "ExecStartPre failed as $SERVICE_USER"
}
grep -q "configuration is valid" "$WORK/check.out" || fail "check-config did not validate"
grep -q "$BROKER" "$WORK/check.out" || fail "check-config did not read the edited configuration"

echo "-- ExecStart as $SERVICE_USER: ${exec_start[*]}"
(as_service "${exec_start[@]}") >"$WORK/service.out" 2>"$WORK/service.err" &
service=$!
pids+=("$service")
# The calls counted at the Agent's socket: one per message, summed over the aggregation windows.
calls_received() {
    sed -nE 's/^algorithmia\.calls:([0-9]+)\|c.*/\1/p' "$WORK/received" 2>/dev/null |
        awk '{ n += $1 } END { print n + 0 }'
}
# Forwarding: wait until every message's call arrived, at most 90 s.
for _ in $(seq 90); do
    sleep 1
    kill -0 "$service" 2>/dev/null || { cat "$WORK/service.err" >&2; fail "the service exited"; }
    [ "$(calls_received)" -ge "$MESSAGES" ] && break
done
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$service/status")
[ "$uid" = "$(id -u "$SERVICE_USER")" ] || fail "the service runs as uid $uid, not $SERVICE_USER"
kill -TERM "$service"
code=0
timeout 15 tail --pid="$service" -f /dev/null || fail "still running 15 s after SIGTERM"
wait "$service" || code=$?
[ "$code" = 0 ] || { cat "$WORK/service.err" >&2; fail "exit code $code after SIGTERM"; }
sleep 0.5
gauges=$(grep -c '^algorithmia\.[a-z0-9_]*:[^|]*|g|#' "$WORK/received" || true)
consumed=$(sed -nE 's/^algorithmia\.forwarder\.messages_consumed:([0-9]+)\|c.*/\1/p' "$WORK/received" |
    awk '{ n += $1 } END { print n + 0 }')
calls=$(calls_received)
echo "   $gauges gauges and $calls calls received; the forwarder reports $consumed messages consumed"
[ "$consumed" = "$MESSAGES" ] || { cat "$WORK/service.err" >&2; fail "consumed $consumed of $MESSAGES"; }
[ "$calls" = "$MESSAGES" ] || fail "$calls calls counted for $MESSAGES messages"
[ "$gauges" -gt 0 ] || fail "no gauge received"
if grep -E ' (ERROR|WARN) ' "$WORK/service.err"; then fail "the service logged problems"; fi

echo "-- systemd-analyze verify"
verify=$(systemd-analyze verify --root="$ROOT" "/etc/systemd/system/$(basename "$UNIT")" 2>&1) ||
    { echo "$verify" >&2; fail "systemd-analyze verify failed"; }
[ -z "$verify" ] || { echo "$verify" >&2; fail "systemd-analyze verify complained"; }

echo "-- systemd-analyze security"
exposure=$(systemd-analyze security --offline=true "$UNIT" 2>&1 |
    sed -nE 's/.*Overall exposure level for .*: ([0-9.]+) .*/\1/p')
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security"
echo "   exposure $exposure (must stay under $MAX_EXPOSURE)"
awk -v e="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e < max) }' ||
    fail "the unit's exposure level is $exposure, not under $MAX_EXPOSURE"

echo "install test passed"
