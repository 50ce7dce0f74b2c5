#!/usr/bin/env bash
# Stage what benchmarks/gpu_h200.py needs on the GPU machine into .gpu_bundle/ at the repository root
# (kept out of git by .git/info/exclude; the device tool's `carry` takes it along, <= 64 MiB):
#   .gpu_bundle/wheels/          diffusers (pure Python; not installed there) and importlib_metadata
#   .gpu_bundle/reference-code/  the authors' VDA code (Python files only) from ../shared/reference-code
# The package itself travels with the working tree. Then, on the device (carry [".gpu_bundle"]):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu_bundle/wheels/*.whl && \
#     PYTHONPATH=/tmp/site:$PWD VDEPTH_REFERENCE_CODE=$PWD/.gpu_bundle/reference-code \
#     python3 benchmarks/gpu_h200.py --out $OUT
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out="$root/.gpu_bundle"
py="${PYTHON:-$root/.venv/bin/python}"
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu_bundle/' "$exclude" 2>/dev/null || echo '/.gpu_bundle/' >>"$exclude"
rm -rf "$out" && mkdir -p "$out/wheels" "$out/reference-code"

diffusers=$("$py" -c 'import diffusers; print(diffusers.__version__)')
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
  --platform any -d "$out/wheels" "diffusers==$diffusers" importlib_metadata zipp 2>&1 | grep -v "WARNING: Location" || true

ref=$("$py" -c 'from vdepth_ros.paths import reference_code_dir as r; d = r(); print(d or "")')
if [ -z "$ref" ] || [ ! -d "$ref/video-depth-anything" ]; then
  echo "the authors' code (../shared/reference-code/video-depth-anything) is missing: the run will skip it" >&2
else
  (cd "$ref" && find video-depth-anything -name '*.py' -print0 | xargs -0 tar cf -) | tar xf - -C "$out/reference-code"
fi
ls "$out/wheels"
du -sh "$out"
total=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "tracked files: $((total / 1048576)) MiB; the working tree and .gpu_bundle must stay under 64 MiB together"
