#!/usr/bin/env bash
# Fetch, on a machine with the internet, the wheels bench/gpu_check.sh installs on a GPU machine
# without it (whose image has torch and transformers, not these): into .whl/, ignored by git.
#
#   bash bench/gpu_wheels.sh      # then carry .whl to the GPU machine and run bench/gpu_check.sh
#
# CPython 3.12 on x86-64 Linux (the GPU image's); ~47 MB in all (bitsandbytes is 43 MB of it).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
pin() { grep -E "^$1==" requirements.txt | cut -d' ' -f1; }  # the versions the project pins
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$(pin bitsandbytes)" "$(pin accelerate)" "$(pin torchao)" "$(pin peft)" psutil
ls -l .whl
