#!/usr/bin/env bash
# The GPU check, in one call: what the reasoning engine does on a GPU at the 7B's full size.
#
#   bash bench/gpu_check.sh           # on a GPU machine: the full-size random 7B-shaped model
#   bash bench/gpu_check.sh --tiny    # anywhere (CPU): the same steps on the tiny model, quickly
#
# For a fresh GPU machine with no network: torch and transformers must be there; every other
# package comes from wheels in .whl/ if that folder exists (bitsandbytes, accelerate, torchao, peft:
# `bash bench/gpu_wheels.sh` fetches them where there is a network). Steps: report the
# versions and the device; build the random checkpoint (full size: ~18 GB in bf16 under $WORK);
# run bench/reasoning.py for each quantisation (nf4, nf4 with the audio encoder quantised, torchao
# int4, bf16)
# and each decode mode (transformers' generate, the engine's loop eager and compiled) on 5, 10
# and 30 s clips, alone and with 4 and 8 users at once, printing one table and writing
# $OUT/gpu_check.json (cases with TTFT, per-stream and aggregate tokens/s, peak memory, compile
# time, and whether the tokens equal generate's).
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=0
for arg in "$@"; do
    case "$arg" in
        --tiny) tiny=1 ;;
        *) echo "usage: bash bench/gpu_check.sh [--tiny]" >&2; exit 2 ;;
    esac
done
out="${OUT:-${TMPDIR:-/tmp}/gpu_check}"
work="${WORK:-${TMPDIR:-/tmp}/gpu_check_work}"
mkdir -p "$out" "$work"
python="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" .whl/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the engine from this checkout
export PYTHONUNBUFFERED=1

"$python" - <<'EOF'
import importlib, torch
names = ["transformers", "accelerate", "bitsandbytes", "torchao", "peft"]
found = {n: getattr(importlib.import_module(n), "__version__", "?") if importlib.util.find_spec(n) else "missing"
         for n in names}
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
print(f"torch {torch.__version__}, " + ", ".join(f"{k} {v}" for k, v in found.items()) + f"; {gpu}")
EOF

if [ "$tiny" = 1 ]; then
    "$python" bench/reasoning.py --dir "$work/tiny" --quants fp32 nf4 int4 --seconds 5 10 \
        --new-tokens 24 --repeats 1 --concurrency 1 4 --json "$out/gpu_check.json"
else
    "$python" bench/reasoning.py --full-size --dir "$work/et7b" --quants nf4 nf4+audio int4 bf16 \
        --seconds 5 10 30 --new-tokens 256 --repeats 1 --concurrency 1 4 8 --json "$out/gpu_check.json"
fi

"$python" - "$out/gpu_check.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"\n{report['device']}, {report['model']}, {report['new_tokens']} new tokens")
print(f"{'quant':>10} {'mode':>9} {'clip':>5} {'users':>5} {'TTFT ms':>8} {'tok/s':>7} {'total tok/s':>11} "
      f"{'peak GiB':>8} {'compile s':>9} {'= generate':>10}")
for c in report["cases"]:
    compile_s = "" if c["compile_s"] is None else f"{c['compile_s']:.1f}"
    match = {True: "yes", False: "NO", None: "-"}[c["tokens_match_eager"]]
    print(f"{c['quant']:>10} {c['mode']:>9} {c['clip_s']:>4.0f}s {c['concurrency']:>5} {1000 * c['ttft_s']:8.1f} "
          f"{c['decode_tok_s']:7.1f} {c['aggregate_tok_s']:11.1f} {c['peak_gib']:8.2f} {compile_s:>9} {match:>10}")
print(f"\nwritten: {sys.argv[1]}")
EOF
