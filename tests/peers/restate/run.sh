#!/bin/bash
# The order saga on Restate (server 1.7.12 with its defaults, Node SDK), measured the way
# `baton bench order` measures Baton: C sagas in flight for SECS seconds after WARM seconds,
# RUNS runs each at C=1 and C=64, one JSON line per run. The server keeps its log and state
# in a fresh temporary directory. Needs Node and the npm registry the first time.
#   bash tests/peers/restate/run.sh            # SECS=8 WARM=2 RUNS=3
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
data=$(mktemp -d)
node_modules/.bin/restate-server --base-dir "$data" > "$data/server.log" 2>&1 &
server=$!
node saga.cjs > "$data/service.log" 2>&1 &
service=$!
trap 'kill $server $service 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 60); do curl -sf localhost:9070/health > /dev/null && break; sleep 0.5; done
for _ in $(seq 1 20); do
  curl -sf -X POST localhost:9070/deployments -H 'content-type: application/json' \
    -d '{"uri":"http://127.0.0.1:9080"}' > /dev/null && break
  sleep 0.5
done
sleep 1
curl -sf -X POST localhost:8080/order/run -H 'content-type: application/json' \
  -d '{"order_id":"warm","customer":"ada","items":[{"sku":"A-1","qty":2,"price":10.5}]}' > /dev/null \
  || { echo "the saga did not run; see $data/service.log" >&2; cat "$data/service.log" >&2; exit 1; }
for c in 1 64; do
  for _ in $(seq 1 "${RUNS:-3}"); do node load.cjs "$c" "${SECS:-8}" "${WARM:-2}"; done
done
