#!/usr/bin/env bash
# Colibri — the test command (`npm test`, `.ci/run`).
#
#   bash scripts/test.sh                  # setup, type-check, whole suite under Deno and Bun
#   bash scripts/test.sh test/foo.test.ts # only these files (passed to both runners)
#
# Steps: scripts/setup.sh (npm + Debian packages + Redis), `deno check` of the source
# trees, `deno test -A --no-check` (types were just checked; this way one file's type
# error does not keep every other test from running), `bun test`. Both runners' output
# is shown and kept in a temp directory (removed when everything passed, kept and named
# otherwise).
#
# The very last line is always `N passed, N failed`, summed over both runners. The exit
# status is non-zero whenever anything failed.
#
# How tests are counted: one count per individual test case, the same way in both runners.
#   Bun     counts leaf tests itself: ` N pass` is the passed count. Failures are the
#           `(fail) name` lines (tests that ran and failed) plus ` N error(s)` (errors
#           outside tests: a file that does not load, a failing hook), and never less
#           than ` N fail`. (Bun counts an unloadable file in both ` N fail` and
#           ` N error`, a failing node:test `before` hook only in ` N error` while the
#           tests under it still "pass"; this way each counts once.)
#   Deno    runs node:test `describe`/`it` as a test with nested steps, and its summary
#           `ok | 5 passed (12 steps) | 0 failed` counts every describe block too. So the
#           Deno count comes from the JUnit report (--junit-path): every test or step that
#           has no children is one case; a failed describe/test none of whose children
#           failed (e.g. a failing before-hook) counts as one failure. If the report is
#           missing, the summary line is used instead (top-level tests + steps).
#   Skipped / ignored / todo tests count in neither column.
#   A failed type-check counts as 1 failure. A runner that exits non-zero without any
#   counted failure, prints no summary, or hits the time limit, counts as (at least) 1.
#
# Knobs (environment):
#   COLIBRI_TEST_JOBS=N     Deno test files run in parallel (default: CPUs, at most 4; 1 = serial)
#   COLIBRI_TEST_TIMEOUT=S  wall-clock limit per runner in seconds (default 1800)
#   COLIBRI_RUNNERS="deno bun deno-redis bun-redis"  which runners to use (the -redis ones
#                           re-run test/wire and test/mqtt5 with every broker on Redis)
#   COLIBRI_SKIP_SETUP=1    do not run scripts/setup.sh
#   COLIBRI_SKIP_CHECK=1    do not type-check
set -uo pipefail
cd "$(dirname "$0")/.."

DENO=node_modules/.bin/deno
BUN=node_modules/.bin/bun

if [ "${COLIBRI_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/colibri-test.XXXXXX")
keep_logs=0
cleanup() { if [ "$keep_logs" = 0 ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

# Colour codes in logs are noise when nobody is looking at a terminal.
if [ ! -t 1 ]; then export NO_COLOR=1; fi

ncpu=$(nproc 2>/dev/null || echo 2)
deno_jobs=${COLIBRI_TEST_JOBS:-$(( ncpu < 4 ? ncpu : 4 ))}
limit=${COLIBRI_TEST_TIMEOUT:-1800}
runners=${COLIBRI_RUNNERS:-deno bun deno-redis bun-redis}

banner() { printf '\n======== %s ========\n' "$*"; }

# `timeout` normally runs the command in a process group of its own and, on expiry,
# kills the whole group (brokers a test spawned included). That group does not get the
# terminal's Ctrl-C, so at an interactive terminal keep the runner in the foreground.
timeout_opts=(--kill-after=30)
if [ -t 0 ] && [ -t 1 ]; then timeout_opts+=(--foreground); fi

# run_logged <name> <cmd...>: run with a time limit, stdin closed, output shown and
# saved to $tmp/<name>.log; sets $rc.
run_logged() {
  local name=$1; shift
  local t0=$SECONDS
  timeout "${timeout_opts[@]}" "$limit" "$@" </dev/null 2>&1 | tee "$tmp/$name.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "[test.sh] $name: stopped after ${limit}s (COLIBRI_TEST_TIMEOUT)" | tee -a "$tmp/$name.log"
  fi
  echo "[test.sh] $name: exit $rc after $(( SECONDS - t0 ))s"
}

# Counts one runner's results; prints "<passed> <failed> <description>".
# Arguments: runner log junit-path exit-code
read -r -d '' COUNT_JS <<'JS'
const [runner, logPath, junitPath, rcText, namesPath] = Deno.args;
const failedNames = []; // what the summary names, so a CI tail shows which test failed
const rc = Number(rcText);
const read = (p) => { try { return Deno.readTextFileSync(p); } catch { return ""; } };
const log = read(logPath).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
const lastNumber = (re) => { let v; for (const m of log.matchAll(re)) v = Number(m[1]); return v; };
let passed = 0, failed = 0, how = "";

if (runner === "bun") {
  const p = lastNumber(/^\s*(\d+) pass$/gm);
  const f = lastNumber(/^\s*(\d+) fail$/gm);
  const e = lastNumber(/^\s*(\d+) errors?$/gm) ?? 0;
  if (p === undefined && f === undefined) {
    failed = 1; how = "no summary printed";
  } else {
    // Tests that ran and failed print "(fail) name"; a file that cannot load adds 1 to
    // both "fail" and "errors" without such a line; a failing hook only to "errors".
    // With failures Bun repeats the "(fail)" lines under "N tests failed:"; count that list.
    const recap = [...log.matchAll(/^\d+ tests? failed:$/gm)].pop();
    const failText = recap ? log.slice(recap.index).split("\n\n")[0] : log;
    const failLines = Math.min((failText.match(/^\(fail\) /gm) ?? []).length, f ?? 0);
    for (const m of failText.matchAll(/^\(fail\) (.*)$/gm)) failedNames.push(m[1]);
    passed = p ?? 0; failed = Math.max(f ?? 0, failLines + e);
    how = `bun summary: ${p ?? 0} pass, ${f ?? 0} fail${e ? `, ${e} error(s)` : ""}`;
  }
} else {
  const sums = [...log.matchAll(/^(ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?.*$/gm)];
  const sum = sums.length ? sums[sums.length - 1] : undefined;
  const xml = read(junitPath);
  if (xml.includes("<testsuites")) {
    const SEP = " &gt; ";
    const cases = [];
    for (const m of xml.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
      const name = /\bname="([^"]*)"/.exec(m[1])?.[1] ?? "";
      const cls = /\bclassname="([^"]*)"/.exec(m[1])?.[1] ?? "";
      const body = m[2] ?? "";
      const status = /<(failure|error)\b/.test(body) ? "failed" : /<skipped\b/.test(body) ? "skipped" : "passed";
      const why = /<(?:failure|error)\b[^>]*\bmessage="([^"]*)"/.exec(body)?.[1] ?? "";
      // node:test steps are filed under the shim ("ext:..."), Deno.test steps under their file
      cases.push({ name, scope: cls.startsWith("ext:") ? "*" : cls, status, why });
    }
    const parents = new Set();
    for (const c of cases) {
      const parts = c.name.split(SEP);
      for (let i = 1; i < parts.length; i++) parents.add(c.scope + "\0" + parts.slice(0, i).join(SEP));
    }
    const isParent = (c) => parents.has(c.scope + "\0" + c.name) || parents.has("*\0" + c.name);
    for (const c of cases) {
      if (!isParent(c)) {
        if (c.status === "passed") passed++;
        else if (c.status === "failed") { failed++; failedNames.push(c); }
      } else if (c.status === "failed") {
        const childFailed = cases.some((d) => d.status === "failed" && d.name.startsWith(c.name + SEP) &&
          (d.scope === c.scope || d.scope === "*"));
        if (!childFailed) { failed++; failedNames.push(c); } // the describe itself failed (hook, uncaught error)
      }
    }
    how = `deno junit: ${cases.length} tests+steps, ${passed + failed} leaf cases counted`;
    if (sum) how += `; deno summary: ${sum[0].replace(/\s*\(\d[^)]*m?s\)\s*$/, "")}`;
    if (sum && Number(sum[4]) + Number(sum[5] ?? 0) > 0 && failed === 0) failed = 1;
  } else if (sum) {
    passed = Number(sum[2]) + Number(sum[3] ?? 0);
    failed = Number(sum[4]) + Number(sum[5] ?? 0);
    how = `deno summary (no junit report): ${sum[0]}`;
  } else {
    failed = 1; how = "no summary printed";
  }
}
if (rc !== 0 && failed === 0) { failed = 1; how += `; exit code ${rc} counted as 1 failure`; }
const unxml = (t) => t.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&quot;/g, '"').replace(/&#10;/g, " ")
  .replace(/&apos;/g, "'").replace(/&amp;/g, "&").replace(/\s+/g, " ");
const named = failedNames.slice(0, 20).map((c) => typeof c === "string" ? c
  : `${c.scope === "*" ? "" : c.scope + ": "}${unxml(c.name)}${c.why ? ` -- ${unxml(c.why).slice(0, 300)}` : ""}`);
if (failedNames.length > 20) named.push(`... and ${failedNames.length - 20} more`);
if (namesPath) { try { Deno.writeTextFileSync(namesPath, named.map((n) => `  ${n}\n`).join("")); } catch { /* summary only */ } }
if (rc === 124 || rc === 137) how += "; timed out";
console.log(`${passed} ${failed} ${how}`);
JS

count() { # count <runner> <log> <junit> <rc> <failed-names-file>
  local out
  if out=$("$DENO" eval --no-config "$COUNT_JS" "$@" 2>/dev/null) && [ -n "$out" ]; then
    echo "$out"
  else
    echo "0 1 could not count results (deno eval failed)"
  fi
}

total_passed=0
total_failed=0
report=()

# ---- type-check ---------------------------------------------------------------
if [ "${COLIBRI_SKIP_CHECK:-0}" != 1 ]; then
  check_dirs=()
  for d in src adapters test scripts; do
    if [ -d "$d" ] && [ -n "$(find "$d" -name '*.ts' -print -quit)" ]; then check_dirs+=("$d/"); fi
  done
  if [ "${#check_dirs[@]}" -gt 0 ]; then
    banner "type-check: deno check ${check_dirs[*]}"
    run_logged check "$DENO" check "${check_dirs[@]}"
    if [ "$rc" = 0 ]; then
      report+=("type-check: ok")
    else
      total_failed=$(( total_failed + 1 ))
      report+=("type-check: FAILED (exit $rc) — counted as 1 failure")
    fi
  fi
fi

# ---- runners ------------------------------------------------------------------
for r in $runners; do
  case $r in
    deno)
      args=(test -A --no-check "--junit-path=$tmp/deno-junit.xml")
      if [ "$deno_jobs" -gt 1 ]; then args+=(--parallel); fi
      banner "deno test (DENO_JOBS=$deno_jobs)"
      export DENO_JOBS=$deno_jobs
      run_logged deno "$DENO" "${args[@]}" "$@"
      ;;
    bun)
      banner "bun test"
      run_logged bun "$BUN" test "$@"
      ;;
    deno-redis|bun-redis)
      # The broker's wire and MQTT 5 suites once more, with every test broker on the Redis
      # backend (test/helpers/broker.ts, own key prefix, cleaned up): the same behaviour
      # must hold when each session change is a Redis round trip.
      if [ "$#" -gt 0 ]; then continue; fi
      banner "$r: test/wire test/mqtt5 with COLIBRI_TEST_PERSISTENCE=redis"
      export COLIBRI_TEST_PERSISTENCE=redis
      if [ "$r" = deno-redis ]; then
        args=(test -A --no-check "--junit-path=$tmp/deno-redis-junit.xml")
        if [ "$deno_jobs" -gt 1 ]; then args+=(--parallel); fi
        run_logged "$r" "$DENO" "${args[@]}" test/wire test/mqtt5
      else
        run_logged "$r" "$BUN" test test/wire test/mqtt5
      fi
      unset COLIBRI_TEST_PERSISTENCE
      ;;
    *) echo "[test.sh] unknown runner '$r' in COLIBRI_RUNNERS"; continue ;;
  esac
  kind=${r%-redis}
  read -r p f how <<<"$(count "$kind" "$tmp/$r.log" "$tmp/${kind}${r#$kind}-junit.xml" "$rc" "$tmp/$r.failed")"
  total_passed=$(( total_passed + p ))
  total_failed=$(( total_failed + f ))
  report+=("$r: $p passed, $f failed ($how)")
  if [ -s "$tmp/$r.failed" ]; then report+=("$r failed:" "$(cat "$tmp/$r.failed")"); fi
done

banner "summary"
for line in "${report[@]}"; do echo "$line"; done
if [ "$total_failed" -gt 0 ]; then
  keep_logs=1
  echo "logs kept in $tmp"
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
