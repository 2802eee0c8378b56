#!/usr/bin/env bash
# Item 4 of the monitoring issue: a served model's /metrics and request log after load runs of real stars, and
# python -m stellar.monitor on each log. Two load runs of real Hipparcos stars against serve.py (one request log
# each): the catalogue as it is (in distribution) and the same stars 2 mag fainter (a deeper survey).
#   bash experiments/monitoring/served_monitor.sh <out dir> [n requests]
set -euo pipefail
OUT=$1; N=${2:-400}
PORT=8718
REG=$OUT/registry
mkdir -p "$OUT"
python train.py experiment=hipparcos_sed datamodule.data_dir=../shared/data/hipparcos register=true \
  "registry.root=$REG" "paths.output_dir=$OUT/run" "hydra.run.dir=$OUT/hydra-train" logger=none \
  "paths.data_dir=$OUT/data" > "$OUT/train.log" 2>&1
for shift in 0 2; do
  LOG=$OUT/requests-shift$shift
  rm -rf "$LOG"
  setsid python serve.py port=$PORT "registry.root=$REG" endpoints.sed.model=sed_xgboost endpoints.spectral=null \
    endpoints.lightcurve=null endpoints.multimodal=null "hydra.run.dir=$OUT/hydra-serve" metrics=true \
    "request_log.dir=$LOG" request_log.flush_seconds=2 > "$OUT/serve-shift$shift.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 240); do
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health" | grep -q 200 && break
    sleep 0.5
  done
  PYTHONPATH=. python experiments/monitoring/load_run.py --registry "$REG" --models sed_xgboost --n "$N" \
    --concurrency 8 --url "http://127.0.0.1:$PORT" --hipparcos ../shared/data/hipparcos/hipparcos_giant_dwarf.csv \
    --v-shift "$shift" --request-log "$LOG" --out "$OUT/load_run-shift$shift.json" > "$OUT/load_run-shift$shift.txt"
  kill -TERM -- "-$SERVER"
  while kill -0 -- "-$SERVER" 2>/dev/null; do sleep 0.5; done
  python -m stellar.monitor model=sed_xgboost "registry.root=$REG" "requests=$LOG" \
    "paths.output_dir=$OUT/monitor-shift$shift" "hydra.run.dir=$OUT/hydra-monitor" > "$OUT/monitor-shift$shift.log" 2>&1
done
