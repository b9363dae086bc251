#!/usr/bin/env bash
# Colibri — a cluster on this machine in one command: N broker nodes on one Redis, behind
# HAProxy (TCP mode), for trying the cluster out.
#
#   bash scripts/cluster-up.sh [N]        # default 3 nodes
#   bash scripts/cluster-down.sh          # stop everything this started
#
# Clients connect to 127.0.0.1:${COLIBRI_LB_PORT:-1884} (balanced over the nodes whose /readyz
# says ready), or to node i directly through HAProxy on port ${COLIBRI_LB_PORT:-1884} + i. Nodes
# listen on 127.0.0.1:${COLIBRI_NODE_BASE_PORT:-21880} + i and serve /metrics, /healthz, /readyz
# and POST /drain on 127.0.0.1:${COLIBRI_HTTP_BASE_PORT:-9100} + i. A Redis is started on
# ${COLIBRI_REDIS_PORT:-6379} when none answers there. State (pids, logs, haproxy.cfg) lives in
# ${COLIBRI_CLUSTER_DIR:-/tmp/colibri-cluster}. Environment: COLIBRI_RUNTIME=bun|deno (default bun),
# COLIBRI_REDIS_PREFIX (default colibri:), and any COLIBRI_<OPTION> the broker takes is passed on
# to every node. COLIBRI_CLUSTER_DRY_RUN=1 prints each node's command and the HAProxy
# configuration and starts nothing (deploy/compose.yaml is checked against it).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-3}
dir=${COLIBRI_CLUSTER_DIR:-/tmp/colibri-cluster}
lb=${COLIBRI_LB_PORT:-1884}
base=${COLIBRI_NODE_BASE_PORT:-21880}
http_base=${COLIBRI_HTTP_BASE_PORT:-9100}
redis_port=${COLIBRI_REDIS_PORT:-6379}
runtime=${COLIBRI_RUNTIME:-bun}
prefix=${COLIBRI_REDIS_PREFIX:-colibri:}

log() { printf '[cluster-up] %s\n' "$*" >&2; }

if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
  log "invalid node count '$n': expected a whole number from 1, e.g. 'bash scripts/cluster-up.sh 3'"
  exit 2
fi

# --- what runs: each node's command, and HAProxy's configuration -------------------------
node_cmd() { # node_cmd <i>: the command line of node n<i>, one argument per line
  if [ "$runtime" = deno ]; then printf '%s\n' node_modules/.bin/deno run -A src/main.ts
  else printf '%s\n' node_modules/.bin/bun run src/main.ts; fi
  printf '%s\n' --host 127.0.0.1 --port $((base + $1)) --node-id "n$1" --persistence redis \
    --redis-url "redis://127.0.0.1:$redis_port" --redis-prefix "$prefix" \
    --http-host 127.0.0.1 --http-port $((http_base + $1))
}
haproxy_cfg() {
  printf 'global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n'
  printf '  option redispatch\n  retries 3\n'
  printf 'frontend lb\n  bind 127.0.0.1:%s\n  default_backend all\nbackend all\n  balance leastconn\n' "$lb"
  # a node is given clients while its /readyz says ready: not while starting, draining or cut off from Redis
  printf '  option httpchk GET /readyz\n  http-check expect status 200\n'
  for i in $(seq 1 "$n"); do
    printf '  server n%s 127.0.0.1:%s check port %s inter 1s fall 2 rise 1\n' "$i" $((base + i)) $((http_base + i))
  done
  for i in $(seq 1 "$n"); do
    printf 'frontend f%s\n  bind 127.0.0.1:%s\n  default_backend b%s\nbackend b%s\n  server n%s 127.0.0.1:%s\n' \
      "$i" $((lb + i)) "$i" "$i" "$i" $((base + i))
  done
}
if [ "${COLIBRI_CLUSTER_DRY_RUN:-}" = 1 ]; then
  for i in $(seq 1 "$n"); do echo "# node n$i"; node_cmd "$i"; done
  echo "# haproxy.cfg"; haproxy_cfg
  exit 0
fi

if [ -e "$dir/pids" ] && [ -s "$dir/pids" ]; then
  log "a cluster seems to run already (see $dir/pids); stop it with 'bash scripts/cluster-down.sh'"
  exit 2
fi
mkdir -p "$dir"
: > "$dir/pids"

if [ ! -x node_modules/.bin/bun ] || [ ! -x node_modules/.bin/deno ]; then
  log "installing npm dependencies"
  npm install --no-audit --no-fund >/dev/null
fi
haproxy=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null || true)
if [ -z "$haproxy" ]; then
  log "installing haproxy (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy >/dev/null
  else sudo -n apt-get update -qq && sudo -n apt-get install -y -qq --no-install-recommends haproxy >/dev/null; fi
  haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
fi

# --- Redis ---------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
  log "no Redis on 127.0.0.1:$redis_port: starting one (append-only file in $dir)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --appendonly yes --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  echo "redis $(cat "$dir/redis.pid")" >> "$dir/pids"
fi

# --- nodes ---------------------------------------------------------------------------------
for i in $(seq 1 "$n"); do
  mapfile -t cmd < <(node_cmd "$i")
  "${cmd[@]}" > "$dir/n$i.log" 2>&1 < /dev/null &
  echo "node $! n$i $((base + i))" >> "$dir/pids"
done
for i in $(seq 1 "$n"); do
  for _ in $(seq 1 100); do grep -q "colibri listening" "$dir/n$i.log" && break; sleep 0.1; done
  if ! grep -q "colibri listening" "$dir/n$i.log"; then
    log "node n$i did not start; its log:"; cat "$dir/n$i.log" >&2
    bash scripts/cluster-down.sh; exit 1
  fi
done

# --- HAProxy -------------------------------------------------------------------------------
haproxy_cfg > "$dir/haproxy.cfg"
"$haproxy" -f "$dir/haproxy.cfg" -db > "$dir/haproxy.log" 2>&1 < /dev/null &
echo "haproxy $!" >> "$dir/pids"
sleep 0.3
if ! kill -0 "$(awk '$1=="haproxy"{print $2}' "$dir/pids")" 2>/dev/null; then
  log "haproxy did not start:"; cat "$dir/haproxy.log" >&2
  bash scripts/cluster-down.sh; exit 1
fi

echo "colibri cluster of $n nodes ($runtime) on redis://127.0.0.1:$redis_port prefix $prefix"
echo "  balanced:  mqtt://127.0.0.1:$lb"
for i in $(seq 1 "$n"); do
  echo "  node n$i:   mqtt://127.0.0.1:$((lb + i))   http://127.0.0.1:$((http_base + i))/metrics   (log: $dir/n$i.log)"
done
echo "stop with: bash scripts/cluster-down.sh"
