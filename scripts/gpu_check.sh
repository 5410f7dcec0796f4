#!/usr/bin/env bash
# steerdiff GPU check: install, then run every domain's check on one GPU within a time limit.
#
#   scripts/gpu_check.sh                       # make .venv-gpu, install, run all checks (8 min limit)
#   scripts/gpu_check.sh --venv .venv          # use an existing venv as it is (no install)
#   scripts/gpu_check.sh --dry-run --venv .venv   # every check at a tiny size on the CPU (a few minutes)
#   scripts/gpu_check.sh --only core,inverse --limit 300 --out runs/gpu_check/mine
#
# Sizes: the domain checks run the domain CLIs with `--preset gpu-check` (or `--preset smoke` with --dry-run);
# the presets live in packages/<domain>/src/steerdiff/<domain>/presets.py and `--help` of each command lists
# them (docs/presets.md). The core check sizes itself (scripts/gpu_core_check.py, --tiny in a dry run); the
# posterior and matrix benchmarks run in full (--quick in a dry run).
#
# Options:
#   --dry-run        tiny sizes (--preset smoke), --device cpu, a cache of its own under --out (tests the plumbing)
#   --venv PATH      use this venv as it is when it has a python; otherwise create it there and install
#                    (default .venv-gpu: created and installed if missing)
#   --out DIR        where every check's JSON, logs and summary.json go (default runs/gpu_check/<UTC date>)
#   --limit SECONDS  total time limit of the checks, installation excluded (default 480)
#   --only A,B       run only these checks (names below); the others are listed as skipped
#   --device DEV     device for the checks (default cuda; cpu with --dry-run)
#   --list           print the checks and what each verifies, then exit
#
# Installation (./dev style): python3 -m venv --system-site-packages (a CUDA torch already on the machine is
# reused), torch from $STEERDIFF_TORCH when set (or when no torch is importable: default "torch"), then the
# five packages editable with their [all] extras.
#
# Every check runs under its own `timeout` (its budget, or what is left of --limit if less); a check that
# would start with under 15 s left is skipped. Each check writes into OUT/<check>/ (the benchmarks' and CLIs'
# JSON and summary.json files) and its log into OUT/<check>.log. OUT/summary.json lists the checks done,
# failed (with the exit code; 124 = its timeout) and skipped, with their times; it is rewritten after every
# check, and on Ctrl-C / SIGTERM, so what finished is kept.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
VENV=""
OUT=""
LIMIT=480
ONLY=""
DEVICE=""
LIST=0
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --venv) VENV=${2:?--venv needs a path}; shift ;;
        --out) OUT=${2:?--out needs a folder}; shift ;;
        --limit) LIMIT=${2:?--limit needs seconds}; shift ;;
        --only) ONLY=${2:?--only needs check names}; shift ;;
        --device) DEVICE=${2:?--device needs a device}; shift ;;
        --list) LIST=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$LIMIT" in '' | *[!0-9]*) echo "gpu_check.sh: --limit must be whole seconds, got '$LIMIT'" >&2; exit 2 ;; esac

# name | budget on the GPU (s) | what it verifies (one line). Order = priority: the four domains' checks first
# (400 s together, inside the default 480 s limit), then the core's; when the limit is reached the remaining
# ones are skipped (raise --limit to run them all).
CHECKS=(
    "inverse|120|EnKG vs EKI on 64x64 Navier-Stokes with 512 particles (relative L2, forward-model calls, wall time) with a prior trained on the GPU (steerdiff-inverse --preset gpu-check)"
    "timeseries|110|TSDiff (the paper's backbone, 336+24-point windows and mean scaling) trained 4000 steps on bundled elecdemand, then TSDiff-Q forecasts with 100 sample paths x 100 DDPM steps per window (CRPS) (steerdiff-timeseries --preset gpu-check)"
    "music|100|SCG, SMC and tree search on chord progressions with 16 candidates against unguided, on a larger chorale prior trained on the GPU (rule loss, OA) (steerdiff-music --preset gpu-check)"
    "policy|70|policy-guided diffusion on Hopper-v5: trajectory model trained on the GPU, TD3+BC with 50% guided synthetic data regenerated during training (steerdiff-policy --preset gpu-check)"
    "core|100|bf16 autocast and torch.compile: train-step and sampling throughput vs fp32 (UNet2D, UNet1D, MLP) and the bf16 samples' deviation from fp32"
    "posterior|60|the core posterior benchmark in full: every guidance family against exact Gaussian posteriors"
    "matrix|60|the guidance matrix at its quick size: every guidance family on every domain's guided tasks at two budgets (the full matrix takes hours: run it alone)"
)
NAMES=()
for c in "${CHECKS[@]}"; do NAMES+=("${c%%|*}"); done

if [ "$LIST" = 1 ]; then
    for c in "${CHECKS[@]}"; do
        IFS='|' read -r n b d <<<"$c"
        printf '%-11s %4ss  %s\n' "$n" "$b" "$d"
    done
    exit 0
fi
if [ -n "$ONLY" ]; then
    for n in ${ONLY//,/ }; do
        case " ${NAMES[*]} " in *" $n "*) ;; *) echo "gpu_check.sh: unknown check '$n'; choose from ${NAMES[*]}" >&2; exit 2 ;; esac
    done
fi

OUT=${OUT:-runs/gpu_check/$(date -u +%Y-%m-%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ "$DRY" = 1 ]; then
    DEVICE=${DEVICE:-cpu}
    export STEERDIFF_CACHE="$OUT/cache"   # never touch the user's cache with tiny models
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    DEVICE=${DEVICE:-cuda}
    export STEERDIFF_CACHE=${STEERDIFF_CACHE:-$ROOT/runs/gpu_check/cache}   # a rerun reuses data and models
fi
export MPLBACKEND=Agg

# ---- installation -----------------------------------------------------------------------------------
install_start=$SECONDS
if [ -n "$VENV" ] && [ -x "$VENV/bin/python" ]; then
    echo "gpu_check: using $VENV as it is"
else
    VENV=${VENV:-.venv-gpu}
    echo "gpu_check: installing into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV" || exit 1
    "$VENV/bin/python" -m pip install -q --upgrade pip || true
    if [ -n "${STEERDIFF_TORCH:-}" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        "$VENV/bin/python" -m pip install -q "${STEERDIFF_TORCH:-torch}" || exit 1
    fi
    "$VENV/bin/python" -m pip install -q -e "packages/core[plot]" -e "packages/policy[all]" \
        -e "packages/timeseries[all]" -e "packages/music[all]" -e "packages/inverse[all]" || exit 1
fi
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
BIN="$VENV/bin"
install_s=$((SECONDS - install_start))
"$PY" -c "
import importlib.util, sys
missing = [p for p in ('core', 'policy', 'timeseries', 'music', 'inverse') if importlib.util.find_spec('steerdiff.' + p) is None]
sys.exit(bool(missing))" || {
    echo "gpu_check: the venv $VENV lacks the steerdiff packages" >&2
    exit 1
}
"$PY" - "$OUT/machine.json" "$DEVICE" "$DRY" <<'EOF'
import json, os, platform, sys, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "device_requested": sys.argv[2], "dry_run": sys.argv[3] == "1", "host": platform.node(),
        "cpus": os.cpu_count(), "load_average": list(os.getloadavg())}
if torch.cuda.is_available():
    info["gpu"] = torch.cuda.get_device_name(0)
    info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print("gpu_check: machine", json.dumps(info))
EOF
if [ "$DRY" = 0 ] && [[ "$DEVICE" == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: --device $DEVICE but torch sees no CUDA device (use --dry-run on a CPU)" >&2
    exit 1
fi

# ---- the checks (each runs in its own bash under `timeout`; $D is its output folder) ----------------
# Sizes: the domain CLIs' presets ($PRESET: gpu-check, or smoke in a dry run).
PRESET=gpu-check
[ "$DRY" = 1 ] && PRESET=smoke
check_core() {
    if [ "$DRY" = 1 ]; then
        "$PY" scripts/gpu_core_check.py --tiny --device "$DEVICE" --compile-backend eager --modes fp32,bf16,bf16+compile \
            --json "$D/core.json"
    else
        "$PY" scripts/gpu_core_check.py --device "$DEVICE" --max-seconds 75 --json "$D/core.json"
    fi
}

# run_cli DOMAIN: the steerdiff-DOMAIN command lines on stdin (one per line; {D} is the check's folder), run
# through the command's own main() in one python process (each start of python and torch costs seconds), each
# with --preset $PRESET when the command has presets, --device $DEVICE and --quiet; stops at the first failure.
run_cli() {
    "$PY" -c '
import importlib, shlex, sys

domain, preset, device, folder = sys.argv[1:]
main = importlib.import_module(f"steerdiff.{domain}.cli").main
presets = importlib.import_module(f"steerdiff.{domain}.presets").PRESETS
for line in sys.stdin:
    if not line.strip():
        continue
    argv = [arg.replace("{D}", folder) for arg in shlex.split(line)] + ["--device", device, "--quiet"]
    argv += ["--preset", preset] if argv[0] in presets else []
    print(f"steerdiff-{domain}", shlex.join(argv), flush=True)
    code = main(argv)
    if code:
        sys.exit(code)
' "$1" "$PRESET" "$DEVICE" "$D"
}

check_inverse() {
    run_cli inverse <<'EOF'
make-data --out {D}/data
train-prior --data {D}/data --out {D}/prior
solve --data {D}/data --prior {D}/prior --method enkg --out {D}/enkg
solve --data {D}/data --method eki --out {D}/eki
EOF
}

check_timeseries() {
    run_cli timeseries <<'EOF'
train --data elecdemand --out {D}/train
forecast --model {D}/train/model --out {D}/forecast
EOF
}

check_music() {
    run_cli music <<'EOF'
prepare --out {D}/data
train --data {D}/data --out {D}/train
generate --model {D}/train/model --rules chord_progression --method unguided --out {D}/unguided
evaluate --samples {D}/unguided/samples.npz --data {D}/data --rules chord_progression --out {D}/unguided/eval
generate --model {D}/train/model --rules chord_progression --method scg --out {D}/scg
evaluate --samples {D}/scg/samples.npz --data {D}/data --rules chord_progression --out {D}/scg/eval
generate --model {D}/train/model --rules chord_progression --method smc --out {D}/smc
evaluate --samples {D}/smc/samples.npz --data {D}/data --rules chord_progression --out {D}/smc/eval
generate --model {D}/train/model --rules chord_progression --method tree_search --out {D}/tree_search
evaluate --samples {D}/tree_search/samples.npz --data {D}/data --rules chord_progression --out {D}/tree_search/eval
EOF
}

check_policy() {
    run_cli policy <<'EOF'
collect --out {D}/collect
train --data {D}/collect/data.hdf5 --out {D}/train
train-agent --data {D}/collect/data.hdf5 --model {D}/train/model --out {D}/agent
EOF
}

check_posterior() {
    local quick=()
    [ "$DRY" = 1 ] && quick=(--quick)
    "$PY" benchmarks/guidance_posterior.py "${quick[@]}" --json "$D/guidance_posterior.json"
}

check_matrix() {
    "$PY" benchmarks/guidance_matrix.py --quick --json "$D/guidance_matrix.json"
}
export -f run_cli check_core check_inverse check_timeseries check_music check_policy check_posterior check_matrix
export DRY DEVICE PY BIN PRESET

# ---- the runner ---------------------------------------------------------------------------------------
RECORDS="$OUT/.records.tsv"
: >"$RECORDS"
write_summary() {
    "$PY" - "$OUT" "$RECORDS" "$LIMIT" "$install_s" "$DRY" "$1" "$PRESET" <<'EOF'
import json, os, sys, time
out, records, limit, install_s, dry, state, preset = sys.argv[1:]
NOT_RESULTS = {"config.json", "trainer_state.json", "problem.json"}  # bundles and checkpoints, not results
rows = [line.rstrip("\n").split("\t") for line in open(records) if line.strip()]
done, failed, skipped = [], [], []
for name, status, seconds, rc, what, reason in rows:
    row = {"check": name, "verifies": what, "seconds": float(seconds)}
    folder = os.path.join(out, name)
    if os.path.isdir(folder):
        row["json"] = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(folder)
                             for f in fs if f.endswith(".json") and f not in NOT_RESULTS and "/cache/" not in d)
    if status == "done":
        done.append(row)
    elif status == "failed":
        failed.append({**row, "exit_code": int(rc), "reason": reason, "log": f"{name}.log"})
    else:
        skipped.append({**row, "reason": reason})
summary = {"state": state, "dry_run": dry == "1", "preset": preset, "limit_s": int(limit), "install_s": int(install_s),
           "checks_s": round(sum(float(r[2]) for r in rows), 1), "done": done, "failed": failed, "skipped": skipped,
           "machine": json.load(open(os.path.join(out, "machine.json"))) if os.path.exists(os.path.join(out, "machine.json")) else None,
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
from steerdiff.core import write_json  # atomic: a reader never sees half a summary

write_json(os.path.join(out, "summary.json"), summary)
EOF
}
CURRENT=""
CHILD=""
on_signal() {
    trap - INT TERM
    if [ -n "$CHILD" ]; then  # stop the running check (timeout passes the signal on to its command)
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    [ -n "$CURRENT" ] && printf '%s\tfailed\t%s\t130\t%s\tinterrupted\n' "$CURRENT" "$((SECONDS - cstart))" "$cwhat" >>"$RECORDS"
    write_summary interrupted
    echo "gpu_check: interrupted; summary in $OUT/summary.json" >&2
    exit 130
}
trap on_signal INT TERM

start=$SECONDS
MIN_START=15
[ "$DRY" = 1 ] && MIN_START=2
echo "gpu_check: $([ "$DRY" = 1 ] && echo "DRY RUN (tiny sizes), ")device $DEVICE, limit ${LIMIT}s, out $OUT"
for c in "${CHECKS[@]}"; do
    IFS='|' read -r name budget what <<<"$c"
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then
        printf '%s\tskipped\t0\t0\t%s\tnot in --only\n' "$name" "$what" >>"$RECORDS"
        continue
    fi
    left=$((LIMIT - (SECONDS - start)))
    if [ "$left" -lt "$MIN_START" ]; then
        printf '%s\tskipped\t0\t0\t%s\ttime limit reached (%ss left)\n' "$name" "$what" "$left" >>"$RECORDS"
        echo "gpu_check: skip $name (${left}s left)"
        continue
    fi
    [ "$DRY" = 1 ] && budget=$left   # tiny sizes: only the total limit matters
    t=$((budget < left ? budget : left))
    echo "gpu_check: $name (timeout ${t}s): $what"
    D="$OUT/$name"
    mkdir -p "$D"
    CURRENT=$name cwhat=$what cstart=$SECONDS
    D="$D" timeout -k 10 "$t" bash -c "set -o pipefail; cd '$ROOT' && check_$name" >"$OUT/$name.log" 2>&1 &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CURRENT="" CHILD=""
    secs=$((SECONDS - cstart))
    if [ "$rc" = 0 ]; then
        printf '%s\tdone\t%s\t0\t%s\t\n' "$name" "$secs" "$what" >>"$RECORDS"
        echo "gpu_check: $name done in ${secs}s"
    else
        reason="exit code $rc"
        [ "$rc" = 124 ] || [ "$rc" = 137 ] && reason="timeout after ${t}s"
        printf '%s\tfailed\t%s\t%s\t%s\t%s\n' "$name" "$secs" "$rc" "$what" "$reason" >>"$RECORDS"
        echo "gpu_check: $name FAILED ($reason) after ${secs}s; last lines of $OUT/$name.log:"
        tail -5 "$OUT/$name.log" | sed 's/^/    /'
    fi
    write_summary running
done
write_summary finished
echo "gpu_check: finished in $((SECONDS - start))s; summary in $OUT/summary.json"
python3 -c "
import json,sys; s=json.load(open('$OUT/summary.json'))
print('done:', [r['check'] for r in s['done']], 'failed:', [r['check'] for r in s['failed']], 'skipped:', [r['check'] for r in s['skipped']])
sys.exit(1 if s['failed'] else 0)"
