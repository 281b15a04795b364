#!/usr/bin/env bash
# A real local cluster on loopback: redis-server, three server nodes, two matcher
# services (one active, one standby), HAProxy in front and coturn for relayed calls.
# Prints the URL; Ctrl-C stops everything it started. Installs what is missing first.
#
# Ports (override by environment): LB_PORT (8080, the URL), NODE_PORTS (3901 3902
# 3903), REDIS_PORT (6390), TURN_PORT (3479). Logs go to target/cluster/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."

LB_PORT=${LB_PORT:-8080}
read -r -a NODE_PORTS <<< "${NODE_PORTS:-3901 3902 3903}"
REDIS_PORT=${REDIS_PORT:-6390}
TURN_PORT=${TURN_PORT:-3479}
GEOIP_DB=${LETSMEET_GEOIP_DB:-node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb}
LOGS=target/cluster

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

for port in "$LB_PORT" "${NODE_PORTS[@]}" "$REDIS_PORT" "$TURN_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is taken: set LB_PORT, NODE_PORTS, REDIS_PORT or TURN_PORT" >&2
    exit 2
  fi
done

./scripts/install.sh
log "building the site, the server and the matcher (release)"
cargo leptos build --release
cargo build --release -p matcher --features service --bin matcher

mkdir -p "$LOGS"
: >"$LOGS/banned.lst"
# The admin API (/admin/bans on each node's metrics port) for this local cluster only.
ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
stop() {
  trap - INT TERM EXIT
  log "stopping the cluster"
  # Only what this script started, by PID.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 (see $LOGS/)" >&2
  exit 1
}

# A secret for this run only: coturn and the nodes share it, browsers never see it.
TURN_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$LOGS/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"

turnserver -c deploy/turnserver.conf --listening-ip=127.0.0.1 --listening-port="$TURN_PORT" \
  --relay-ip=127.0.0.1 --min-port=49200 --max-port=49399 --static-auth-secret="$TURN_SECRET" \
  --no-tls --no-dtls --allowed-peer-ip=127.0.0.1 --allow-loopback-peers \
  --log-file=stdout --simple-log >"$LOGS/coturn.log" 2>&1 &
pids+=($!)

for n in 1 2; do
  target/release/matcher --redis-url "$REDIS_URL" >"$LOGS/matcher$n.log" 2>&1 &
  pids+=($!)
done

geoip=()
[ -f "$GEOIP_DB" ] && geoip=(--geoip-db "$GEOIP_DB")
i=0
for port in "${NODE_PORTS[@]}"; do
  i=$((i + 1))
  LEPTOS_SITE_ROOT=target/site target/release/server --bind "127.0.0.1:$port" \
    --metrics-bind "127.0.0.1:$((9186 + i))" --redis-url "$REDIS_URL" \
    --trusted-proxies 127.0.0.1 --drain-delay-secs 3 "${geoip[@]}" \
    --moderation model --admin-token "$ADMIN_TOKEN" --haproxy-socket "$PWD/$LOGS/haproxy.sock" --haproxy-ban-file "$PWD/$LOGS/banned.lst" \
    --turn-urls "turn:127.0.0.1:$TURN_PORT?transport=udp" --turn-secret "$TURN_SECRET" \
    >"$LOGS/node$i.log" 2>&1 &
  pids+=($!)
done
for port in "${NODE_PORTS[@]}"; do wait_port "$port"; done

LETSMEET_LB_ADMIN="$PWD/$LOGS/haproxy.sock" LETSMEET_LB_BANS="$PWD/$LOGS/banned.lst" \
LETSMEET_LB_BIND="127.0.0.1:$LB_PORT" LETSMEET_NODE1="127.0.0.1:${NODE_PORTS[0]}" \
  LETSMEET_NODE2="127.0.0.1:${NODE_PORTS[1]}" LETSMEET_NODE3="127.0.0.1:${NODE_PORTS[2]}" \
  haproxy -f deploy/haproxy.cfg -db >"$LOGS/haproxy.log" 2>&1 &
pids+=($!)
wait_port "$LB_PORT"

cat <<EOF

Let'sMeet cluster on loopback:
  open        http://127.0.0.1:$LB_PORT   (HAProxy: source-hashed over the nodes)
  nodes       ${NODE_PORTS[*]}   (metrics on 9187..$((9186 + i)))
  redis       $REDIS_URL
  matchers    2 (one active; kill it and the other takes over within 2 s)
  coturn      127.0.0.1:$TURN_PORT (udp)
  bans        curl -H 'Authorization: Bearer $ADMIN_TOKEN' http://127.0.0.1:9187/admin/bans
  logs        $LOGS/
Ctrl-C stops everything.
EOF
# Until Ctrl-C: a process killed on purpose (to watch a failover) leaves the rest up.
wait
