#!/usr/bin/env bash
# The server half of experiments/monitoring/README.md: serve.py with /metrics (and the request log or not), a load
# run against it, then the server's process group stopped (SIGTERM, as in production). Alternates three settings.
#   bash experiments/monitoring/load_run.sh <registry root> <model> <out dir> [repeats] [n] [concurrency] [bad]
set -euo pipefail
REG=$1; MODEL=$2; OUT=$3; REPEATS=${4:-3}; N=${5:-500}; CONC=${6:-8}; BAD=${7:-0}
PORT=8717
mkdir -p "$OUT"
for rep in $(seq 1 "$REPEATS"); do
  for setting in monitored metrics plain; do
    logarg=()
    if [ "$setting" = monitored ]; then  # /metrics and the request log
      rm -rf "$OUT/requests-$rep"
      extra=(metrics=true "request_log.dir=$OUT/requests-$rep" request_log.flush_seconds=2)
      logarg=(--request-log "$OUT/requests-$rep")
    elif [ "$setting" = metrics ]; then  # /metrics only
      extra=(metrics=true)
    else  # neither
      extra=(metrics=false)
    fi
    setsid python serve.py port=$PORT "registry.root=$REG" endpoints.sed.model="$MODEL" endpoints.spectral=null \
      endpoints.lightcurve=null endpoints.multimodal=null "hydra.run.dir=$OUT/hydra" "${extra[@]}" \
      > "$OUT/serve-$setting-$rep.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 240); do
      curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health" | grep -q 200 && break
      sleep 0.5
    done
    PYTHONPATH=. python experiments/monitoring/load_run.py --registry "$REG" --models "$MODEL" --n "$N" \
      --concurrency "$CONC" --url "http://127.0.0.1:$PORT" --seed "$rep" --bad "$BAD" "${logarg[@]}" \
      --out "$OUT/load_run-$setting-$rep.json" > "$OUT/load_run-$setting-$rep.txt"
    kill -TERM -- "-$SERVER"
    while kill -0 -- "-$SERVER" 2>/dev/null; do sleep 0.5; done
  done
done
