#!/usr/bin/env bash
# Continue a record's runs on a lent GPU for a set time, and bring back what changed.
#
# A record's runs in training travel in the checkout (their resume points, cells/*.partial.pt, are
# committed with the record), so on the device machine `metagrad reproduce RECORD --time-limit T`
# continues them exactly where this machine stopped, and checkpoints when T is up. The files of the
# record's cells/ that the run wrote (summaries, progress, resume points, kept runs) are copied to
# $OUT/cells/, the names of those it removed (a finished run's resume point) to $OUT/removed.txt.
# The device tool brings back at most 8 files: select one or two cells with ONLY.
#
#   # on the device machine (the `run` verb of the device tool), with that machine's Python and PyTorch:
#   RECORD=omniglot-table3 ONLY="model=MAML n_way=5" LIMIT=8m bash benchmarks/device_continue.sh
#   # back here, with the folder the files came back to:
#   APPLY=/path/to/files_at RECORD=omniglot-table3 bash benchmarks/device_continue.sh
#
# APPLY copies the files into the record's cells/, removes those named in removed.txt and
# rewrites the record's table (--report). Settings: DEVICE (cuda), PYTHON (python3), OUT
# (/tmp/device-continue), RECORDS (the records' folder, reproductions), QUICK=1 (the record's --quick
# settings, for a smoke test), SET (settings for every cell, as --set: "outer.iterations=30 eval.tasks=20";
# give the same to APPLY, or the runs made under them are not the record's), DATA (a data root holding omniglot/; else $METAGRAD_DATA, else .data/ in the
# checkout, as benchmarks/device_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${RECORD:?set RECORD to a record name, e.g. RECORD=omniglot-table3 (metagrad list shows them)}"
PY=${PYTHON:-python3}
RECORDS=${RECORDS:-reproductions}
settings=(); [ -n "${QUICK:-}" ] && settings=(--quick)
for s in ${SET:-}; do settings+=(--set "$s"); done   # the record's settings, in both modes
folder="$RECORDS/$RECORD"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${DATA:-}" ]; then export METAGRAD_DATA="$DATA"
elif [ -z "${METAGRAD_DATA:-}" ] && [ -d .data/omniglot ]; then export METAGRAD_DATA="$PWD/.data"; fi
# the folder whose cells/ holds the record's runs (a sibling one for records that share runs: sweep.store)
cells=$("$PY" -c "import sys; from pathlib import Path; from metagrad.experiments import specs, sweep
print(sweep.store(specs.get(sys.argv[1]), Path(sys.argv[2]), bool(sys.argv[3])) / 'cells')" "$RECORD" "$folder" "${QUICK:-}") \
    || { echo "device_continue: RECORD=$RECORD is not a record (metagrad list shows them)" >&2; exit 2; }

if [ -n "${APPLY:-}" ]; then   # back on this machine: take the files in, drop the removed ones, re-tabulate
    [ -d "$APPLY/cells" ] || { echo "device_continue: no cells/ folder in APPLY=$APPLY" >&2; exit 2; }
    mkdir -p "$cells"
    cp "$APPLY"/cells/* "$cells/" || exit 1
    if [ -f "$APPLY/removed.txt" ]; then
        while read -r name; do [ -n "$name" ] && rm -f "$cells/$name"; done < "$APPLY/removed.txt"
    fi
    exec "$PY" -m metagrad reproduce "$RECORD" "${settings[@]}" --out "$folder" --report
fi

OUT=${OUT:-/tmp/device-continue}
DEV=${DEVICE:-cuda}
LIMIT=${LIMIT:-8m}
only=(); for o in ${ONLY:-}; do only+=(--only "$o"); done
mkdir -p "$OUT/cells" "$cells"
before=$(mktemp); stamp=$(mktemp)   # the cells' files before the run, and a time mark to find those it wrote
(cd "$cells" && ls -1A | grep -v '^\.') > "$before"   # hidden: a run's working folder
sleep 1   # file times have a second's resolution on some file systems: the mark precedes every write
"$PY" -m metagrad reproduce "$RECORD" "${settings[@]}" --out "$folder" "${only[@]}" --time-limit "$LIMIT" \
    --set device="$DEV"
status=$?
find "$cells" -maxdepth 1 -type f -newer "$stamp" \( -name '*.json' -o -name '*.pt' \) -exec cp {} "$OUT/cells/" \;
(cd "$cells" && ls -1A | grep -v '^\.') | comm -23 "$before" - > "$OUT/removed.txt"
echo "device_continue: exit $status; back in $OUT: $(ls "$OUT/cells" | tr '\n' ' ')| removed: $(tr '\n' ' ' < "$OUT/removed.txt")"
rm -f "$before" "$stamp"
exit $status
