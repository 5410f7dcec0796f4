#!/usr/bin/env bash
# steerdiff GPU check: install, then run every domain's check on one GPU within a time limit.
#
#   scripts/gpu_check.sh                       # make .venv-gpu, install, run all checks (8 min limit)
#   scripts/gpu_check.sh --venv .venv          # use an existing venv as it is (no install)
#   scripts/gpu_check.sh --dry-run --venv .venv   # every check at a tiny size on the CPU (a few minutes)
#   scripts/gpu_check.sh --only core,inverse --limit 300 --out runs/gpu_check/mine
#
# Options:
#   --dry-run        tiny sizes, --device cpu, a cache of its own under --out (tests the plumbing, not speed)
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
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
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

# name | budget on the GPU (s) | what it verifies (one line). Order = priority: when the limit is reached the
# remaining ones are skipped.
CHECKS=(
    "core|100|bf16 autocast and torch.compile: train-step and sampling throughput vs fp32 (UNet2D, UNet1D, MLP) and the bf16 samples' deviation from fp32"
    "inverse|120|EnKG vs EKI on 64x64 Navier-Stokes with 512 particles (relative L2, forward-model calls, wall time) with a prior trained on the GPU"
    "timeseries|110|TSDiff trained longer (4000 steps, mean scaling as in the paper) on bundled elecdemand, then TSDiff-Q forecasts with 100 sample paths x 100 DDPM steps per window (CRPS)"
    "music|80|SCG, SMC and tree search on chord progressions at a larger budget (k=16) against unguided, on the GPU-trained chorale model (rule loss, OA)"
    "policy|70|policy-guided diffusion on Hopper-v5: trajectory model trained on the GPU, TD3+BC with 50% guided synthetic data regenerated during training"
    "posterior|60|the core posterior benchmark in full: every guidance family against exact Gaussian posteriors"
    "matrix|60|the guidance matrix in full: every guidance family on every guided task at two budgets"
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
# Sizes: GPU values first, dry-run values after `|| tiny`.
check_core() {
    if [ "$DRY" = 1 ]; then
        "$PY" scripts/gpu_core_check.py --tiny --device "$DEVICE" --compile-backend eager --modes fp32,bf16,bf16+compile \
            --json "$D/core.json"
    else
        "$PY" scripts/gpu_core_check.py --device "$DEVICE" --max-seconds 75 --json "$D/core.json"
    fi
}

check_inverse() {
    local size=64 train=2048 steps=2000 ch=32 bs=64 j=512 s=30 it=100
    [ "$DRY" = 1 ] && { size=16; train=16; steps=2; ch=8; bs=4; j=4; s=4; it=2; }
    "$BIN/steerdiff-inverse" make-data --size $size --num-train $train --num-test 2 --out "$D/data" \
        --device "$DEVICE" --quiet &&
        "$BIN/steerdiff-inverse" train-prior --data "$D/data" --train-steps $steps --channels $ch \
            --batch-size $bs --out "$D/prior" --device "$DEVICE" --quiet &&
        "$BIN/steerdiff-inverse" solve --data "$D/data" --prior "$D/prior" --method enkg --num-samples $j \
            --steps $s --num-fields 2 --out "$D/enkg" --device "$DEVICE" --quiet &&
        "$BIN/steerdiff-inverse" solve --data "$D/data" --method eki --num-samples $j --iterations $it \
            --num-fields 2 --out "$D/eki" --device "$DEVICE" --quiet
}

check_timeseries() {
    local steps=4000 samples=100 sampler=100 hidden=64 tune=8 extra=(--scaling mean)
    [ "$DRY" = 1 ] && { steps=4; samples=2; sampler=3; hidden=8; tune=0; extra=(--blocks 1 --d-state 8 --context 48 --prediction 12 --scaling mean --test-windows 1 --validation-windows 0); }
    "$BIN/steerdiff-timeseries" train --data elecdemand --train-steps $steps --hidden $hidden \
        --tune-budget $tune "${extra[@]}" --out "$D/train" --device "$DEVICE" --quiet &&
        "$BIN/steerdiff-timeseries" forecast --model "$D/train/model" --num-samples $samples --steps $sampler \
            --out "$D/forecast" --device "$DEVICE" --quiet
}

check_music() {
    if [ "$DRY" = 1 ]; then  # --quick with no cached model: the stand-in on 24 chorales
        "$PY" benchmarks/music_scg.py --quick --objectives chord_progression --methods scg,smc,tree_search \
            --device "$DEVICE" --json "$D/music_scg.json"
    else
        "$PY" benchmarks/music_scg.py --objectives chord_progression --methods scg,smc,tree_search --k 16 \
            --samples 32 --val-samples 8 --steps 50 --device "$DEVICE" --json "$D/music_scg.json"
    fi
}

check_policy() {
    local env=Hopper-v5 tr=50000 steps=3000 ch=64 agent=6000 regen=2000 n=256 s=32 ev=3000 eps=5
    [ "$DRY" = 1 ] && { env=Pendulum-v1; tr=400; steps=2; ch=8; agent=8; regen=4; n=2; s=3; ev=8; eps=1; }
    "$BIN/steerdiff-policy" collect --env $env --transitions $tr --out "$D/collect" --quiet &&
        "$BIN/steerdiff-policy" train --data "$D/collect/data.hdf5" --train-steps $steps --base-channels $ch \
            --out "$D/train" --device "$DEVICE" --quiet &&
        "$BIN/steerdiff-policy" train-agent --data "$D/collect/data.hdf5" --agent td3bc --train-steps $agent \
            --model "$D/train/model" --synth-ratio 0.5 --regenerate-every $regen --num-samples $n --steps $s \
            --eval-every $ev --eval-episodes $eps --out "$D/agent" --device "$DEVICE" --quiet
}

check_posterior() {
    local quick=()
    [ "$DRY" = 1 ] && quick=(--quick)
    "$PY" benchmarks/guidance_posterior.py "${quick[@]}" --json "$D/guidance_posterior.json"
}

check_matrix() {
    local quick=()
    [ "$DRY" = 1 ] && quick=(--quick)
    "$PY" benchmarks/guidance_matrix.py "${quick[@]}" --json "$D/guidance_matrix.json"
}
export -f check_core check_inverse check_timeseries check_music check_policy check_posterior check_matrix
export DRY DEVICE PY BIN

# ---- the runner ---------------------------------------------------------------------------------------
RECORDS="$OUT/.records.tsv"
: >"$RECORDS"
write_summary() {
    "$PY" - "$OUT" "$RECORDS" "$LIMIT" "$install_s" "$DRY" "$1" <<'EOF'
import json, os, sys, time
out, records, limit, install_s, dry, state = sys.argv[1:]
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
summary = {"state": state, "dry_run": dry == "1", "limit_s": int(limit), "install_s": int(install_s),
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
