# One device call of the sweeps (16 CPU cores for XGBoost, the GPU for the MLPs); what it ran, in two rounds:
#   round 1: bash run_device.sh                       (xgb_sweep.py's SPECS, mlp_sweep.py's CONFIGS in 4 processes)
#   round 2: ROUND=2 bash run_device.sh               (xgb_round2.json, mlp_round2_[A-D].json)
# The xgboost-cpu wheel travels beside it (that machine has no xgboost).
set -u
cd "$(dirname "$0")"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site xgboost_cpu-*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ "${ROUND:-1}" = 2 ]; then
  (NPAR=5 NT=2 OMP_NUM_THREADS=2 timeout 450 python3 xgb_sweep.py xgb_round2.json > /tmp/xgb.log 2>&1) &
  for t in A B C D; do (TAG=$t timeout 450 python3 mlp_sweep.py mlp_round2_$t.json > /tmp/mlp$t.log 2>&1) & done
else
  (NPAR=5 NT=2 OMP_NUM_THREADS=2 timeout 450 python3 xgb_sweep.py > /tmp/xgb.log 2>&1) &
  (TAG=A timeout 450 python3 mlp_sweep.py > /tmp/mlpA.log 2>&1) &
fi
wait
cat /tmp/*.log > "$OUT/all.log"
tail -n 60 /tmp/*.log
