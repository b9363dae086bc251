#!/usr/bin/env bash
# Colibri — stop what scripts/cluster-up.sh started (by the PIDs it recorded): HAProxy, the
# nodes (SIGTERM: they leave the cluster cleanly), and the Redis it started, if it started one.
set -uo pipefail
dir=${COLIBRI_CLUSTER_DIR:-/tmp/colibri-cluster}
if [ ! -s "$dir/pids" ]; then
  echo "[cluster-down] nothing recorded in $dir/pids: no cluster started by cluster-up.sh" >&2
  exit 0
fi
stop() { # stop <pid>: SIGTERM, then SIGKILL after 5 s
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
while read -r kind pid _; do [ "$kind" = haproxy ] && stop "$pid"; done < "$dir/pids"
while read -r kind pid _; do [ "$kind" = node ] && stop "$pid" & done < "$dir/pids"
wait
while read -r kind pid _; do [ "$kind" = redis ] && stop "$pid"; done < "$dir/pids"
: > "$dir/pids"
echo "[cluster-down] stopped"
