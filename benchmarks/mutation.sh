#!/usr/bin/env bash
# Mutation testing of deepnn/ops, deepnn/layers and part of deepnn/models with mutmut (docs/testing.md).
# Not part of `make test`: a full run takes about an hour on one core.
#
#   benchmarks/mutation.sh               full run from scratch (deletes mutants/), report in benchmarks/logs/mutation.txt
#   benchmarks/mutation.sh --survivors   re-run only the mutants that survived (or had no test) in mutants/,
#                                        e.g. after adding tests; appends to the report
#   benchmarks/mutation.sh NAME...       re-run the named mutants (globs allowed, e.g. 'deepnn.ops.conv.x_conv2d*')
#
# What is mutated and which tests run is configured in setup.cfg ([mutmut]). Everything runs on one core
# (one mutant at a time, one thread), so the run can share a machine.
set -euo pipefail
cd "$(dirname "$0")/.."

MUTMUT_VERSION=3.8.1
VENV=${VENV:-.venv}
PY=$VENV/bin/python
LOG=benchmarks/logs/mutation.txt
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 DEEPNN_OFFLINE=1
if [ -z "${DEEPNN_DATA:-}" ] && [ -d ../shared/data ]; then export DEEPNN_DATA=$PWD/../shared/data; fi

if [ "$($PY -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null)" != "$MUTMUT_VERSION" ]; then
    "$PY" -m pip install -q "mutmut==$MUTMUT_VERSION"  # pure Python; leaves torch alone
fi

mode=full
names=()
if [ "${1:-}" = "--survivors" ]; then
    mode=survivors
    [ -d mutants ] || { echo "no mutants/ folder: run benchmarks/mutation.sh first" >&2; exit 1; }
    mapfile -t names < <("$VENV/bin/mutmut" results 2>/dev/null | awk -F': ' '/: (survived|no tests)$/ {gsub(/ /, "", $1); print $1}')
    if [ ${#names[@]} -eq 0 ]; then echo "no surviving mutants to re-run"; exit 0; fi
    # map functions to tests afresh, so that tests added since the full run are found
    rm -f mutants/mutmut-stats.json
elif [ $# -gt 0 ]; then
    mode=named
    names=("$@")
fi

# mutmut redraws one status line with \r; keep the lines that say something and the last status of each run
tidy() {
    "$PY" -u -c '
import sys
spin = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
last, buf = None, ""
def emit(s):
    global last
    s = s.rstrip()
    if s[:1] in spin:
        last = s[2:]
        return
    if last is not None:
        print(last, flush=True)
        last = None
    if s:
        print(s, flush=True)
while chunk := sys.stdin.readline():  # the status line has no newline: read it piecewise below
    parts = (buf + chunk).replace("\r", "\n").split("\n")
    buf = parts.pop()
    for part in parts:
        emit(part)
emit(buf)
if last is not None:
    print(last)
'
}

summary() {
    "$PY" - <<'EOF'
import collections
from pathlib import Path

from mutmut.configuration import config
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

kinds = ["killed", "survived", "no tests", "timeout", "suspicious", "segfault", "not checked"]
rows, total = [], collections.Counter()
for path in sorted(walk_mutatable_files()):
    if not (Path("mutants") / f"{path}.meta").exists():
        continue
    m = SourceFileMutationData(path=path)
    m.load()
    c = collections.Counter(status_by_exit_code[v] for v in m.exit_code_by_key.values())
    if m.exit_code_by_key:
        rows.append((str(path), len(m.exit_code_by_key), c))
        total.update(c)
        total["all"] += len(m.exit_code_by_key)
print(f"{'file':34} {'mutants':>7} " + " ".join(f"{k:>11}" for k in kinds) + "   score")
for path, n, c in rows + [("TOTAL", total["all"], total)]:
    score = (c["killed"] + c["timeout"]) / n if n else 0.0
    print(f"{path:34} {n:7d} " + " ".join(f"{c[k]:11d}" for k in kinds) + f"  {score:6.1%}")
print("score = (killed + timeout) / mutants; 'no tests' = no selected test calls the function")
EOF
}

survivors() {
    "$PY" - <<'EOF'
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

for path in sorted(walk_mutatable_files()):
    if not (Path("mutants") / f"{path}.meta").exists():
        continue
    m = SourceFileMutationData(path=path)
    m.load()
    for name, code in m.exit_code_by_key.items():
        status = status_by_exit_code[code]
        if status == "killed":
            continue
        print(f"{name}: {status}")
        try:
            diff = get_diff_for_mutant(name, path=path).splitlines()[3:]  # without the ---/+++/@@ header
        except Exception as e:  # noqa: BLE001 - a report line, not a failure
            diff = [f"(no diff: {e})"]
        for line in diff:
            if line[:1] in "-+" and line[1:].strip():
                print(f"    {line[0]} {line[1:].strip()}")
EOF
}

start=$(date +%s)
{
    echo "==== mutmut $MUTMUT_VERSION, $mode run, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "==== python $($PY -c 'import platform, torch; print(platform.python_version(), "torch", torch.__version__)'), $(getconf _NPROCESSORS_ONLN) cores, OMP_NUM_THREADS=1, max children 1"
} > /tmp/mutation.head.$$
if [ "$mode" = full ]; then
    rm -rf mutants
    cat /tmp/mutation.head.$$ > "$LOG"
    sed -n '/^\[mutmut\]/,$p' setup.cfg | grep -v '^#' >> "$LOG"
else
    { echo; cat /tmp/mutation.head.$$; echo "re-running ${#names[@]} mutants: ${names[*]:0:20}$([ ${#names[@]} -gt 20 ] && echo ' ...')"; } >> "$LOG"
fi
rm -f /tmp/mutation.head.$$

set +e
"$VENV/bin/mutmut" run --max-children 1 "${names[@]}" 2>&1 | tidy | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))
{
    echo "==== mutmut exit code $rc, wall time $((elapsed / 60)) min $((elapsed % 60)) s"
    echo "==== summary (all mutants in mutants/, this and earlier runs)"
    summary
    echo "==== mutants not killed, each with its change (mutmut show NAME for the whole diff)"
    survivors
} | tee -a "$LOG"
exit "$rc"
