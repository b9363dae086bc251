#!/usr/bin/env bash
# Colibri — install what the tests and benchmarks need, idempotently.
#
#   bash scripts/setup.sh
#
# On a fresh Debian machine (root, apt, npm registry reachable) this:
#   1. runs `npm install` when node_modules is missing, lacks the bun/deno binaries,
#      or is older than package.json / package-lock.json;
#   2. installs the Debian packages that provide mosquitto_pub/_sub, mosquitto,
#      haproxy, redis-server/redis-cli and tmux (colibri top's test) when a binary is missing
#      (`apt-get update` at most once per run, and only if something is missing);
#   3. makes sure a Redis answers on 127.0.0.1:6379, starting a throwaway one if not.
# Nothing here is fatal: a missing tool is reported and the tests that need it fail
# with their own message. scripts/test.sh runs this first (skip with COLIBRI_SKIP_SETUP=1).
set -uo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# --- npm dependencies (bun and deno come from npm devDependencies) -------------
npm_stamp=node_modules/.colibri-npm-stamp
need_npm=0
if [ ! -x node_modules/.bin/bun ] || [ ! -x node_modules/.bin/deno ]; then
  need_npm=1
else
  ref=$npm_stamp
  [ -e "$ref" ] || ref=node_modules/.package-lock.json
  [ -e "$ref" ] || ref=node_modules
  for f in package.json package-lock.json; do
    if [ -e "$f" ] && [ "$f" -nt "$ref" ]; then need_npm=1; fi
  done
fi

# --- Debian packages -----------------------------------------------------------
apt_updated=0
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "not root and no sudo: cannot run: $*"; return 1
  fi
}
apt_install() { # apt_install <package>
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not available; install '$1' by hand"; return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || log "apt-get update failed"
    apt_updated=1
  fi
  log "apt-get install $1"
  local out rc
  out=$(as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" </dev/null 2>&1)
  rc=$?
  if [ "$rc" != 0 ]; then printf '%s\n' "$out" | tail -20 >&2; fi
  return "$rc"
}
have_bin() { # have_bin <name>: in PATH or in an sbin directory root's PATH would have
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

if [ "$need_npm" = 1 ] && ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs || true
  apt_install npm || true
fi
if [ "$need_npm" = 1 ]; then
  log "npm install"
  if npm install --no-audit --no-fund </dev/null; then
    touch "$npm_stamp"
  else
    log "npm install failed"
  fi
fi

# binary -> Debian package providing it
for pair in mosquitto_pub:mosquitto-clients mosquitto_sub:mosquitto-clients \
            mosquitto:mosquitto haproxy:haproxy redis-server:redis-server redis-cli:redis-tools \
            tmux:tmux; do
  bin=${pair%%:*} pkg=${pair#*:}
  have_bin "$bin" || apt_install "$pkg" || log "could not install $pkg (for $bin)"
done

# --- Redis on 127.0.0.1:6379 ---------------------------------------------------
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if command -v redis-cli >/dev/null 2>&1 && ! redis_up; then
  log "no Redis on 127.0.0.1:6379, starting one"
  redis_bin=$(command -v redis-server || echo /usr/bin/redis-server)
  "$redis_bin" --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no </dev/null >/dev/null \
    || log "redis-server failed to start"
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  redis_up || log "Redis still not reachable on 127.0.0.1:6379"
fi
exit 0
