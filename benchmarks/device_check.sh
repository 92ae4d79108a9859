#!/usr/bin/env bash
# The device check: one short script for a machine with a GPU, run from a checkout there with that
# machine's own Python and PyTorch (metagrad is taken from the checkout through PYTHONPATH; nothing is
# installed). Each part has its own time limit (9.5 minutes in all), so one that hangs or fails leaves
# the others their turn, and the log says which failed. The data can travel in the checkout as .data/
# (git-ignored): `mkdir -p .data && cp -r ../shared/data/omniglot .data/` (6 MB).
#
#   bash benchmarks/device_check.sh   # DEVICE=cuda PYTHON=python3 OUT=/tmp/device-check ITERS=300 CONV4_ARGS=...
#   DATA=/path/to/data bash benchmarks/device_check.sh   # a data root holding omniglot/ (else $METAGRAD_DATA,
#                                                         # else .data/ in the checkout, else ../shared/data)
#
# 1. the machine: torch, its CUDA, the GPU;
# 2. tests/test_devices.py on the GPU (every learner's meta-loss and meta-gradient equal the CPU's in
#    float64, a Population, MT-net's sampled masks, a float32 run cut, resumed and evaluated on the
#    CPU) and test_reliability's train-on-every-device test;
# 3. benchmarks/bench_conv4.py on the GPU: ms per conv4 Omniglot meta-iteration, second and first
#    order, vmapped and looped, with peak device memory;
# 4. 300 iterations of the omniglot-5w1s-maml preset (001 Table 3's 5-way cell) on the GPU: its
#    ms per iteration, which says how long the 60,000-iteration Table 3 cells take there.
# Everything lands in $OUT (log, conv4.json, the run's metrics), small enough to bring back.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check}
DEV=${DEVICE:-cuda}
PY=${PYTHON:-python3}
CONV4_ARGS=${CONV4_ARGS:---rounds 7 --warmup 3}   # bench_conv4's settings
ITERS=${ITERS:-300}   # the Omniglot run's meta-iterations
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${DATA:-}" ]; then export METAGRAD_DATA="$DATA"
elif [ -z "${METAGRAD_DATA:-}" ] && [ -d .data/omniglot ]; then export METAGRAD_DATA="$PWD/.data"; fi
failed=()
part() {   # part NAME SECONDS COMMAND...: run one part under its time limit, note a failure, go on
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
    timeout "$limit" "$@" || { echo "=== $name FAILED (exit $?)"; failed+=("$name"); }
}
{
    part machine 60 "$PY" -c "import torch, metagrad; print('torch', torch.__version__, '| cuda', torch.version.cuda, \
'| devices', metagrad.device.available_devices(), '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
    part tests 240 env METAGRAD_TEST_DEVICES="$DEV" "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py \
        "tests/test_reliability.py::test_train_on_each_device_and_load_its_checkpoint_on_the_cpu"
    part bench_conv4 150 "$PY" benchmarks/bench_conv4.py --device "$DEV" $CONV4_ARGS --json "$OUT/conv4.json"
    part omniglot_maml 120 "$PY" -m metagrad train omniglot-5w1s-maml --device "$DEV" --out "$OUT/omniglot-5w1s-maml" \
        --overwrite --no-progress --set outer.iterations="$ITERS" --set eval.every=0 --set eval.tasks=100 --set log_every=50
    echo "omniglot-5w1s-maml on $DEV: $(tail -n 1 "$OUT/omniglot-5w1s-maml/timing.jsonl" 2>/dev/null)"
    echo "=== done ($(date -u +%H:%M:%S)); failed parts: ${failed[*]:-none}"
    [ ${#failed[@]} -eq 0 ]
} 2>&1 | tee "$OUT/device_check.log"
status=$?
rm -f "$OUT"/omniglot-5w1s-maml/*.pt   # checkpoints: not needed back
exit $status
