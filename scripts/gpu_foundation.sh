#!/usr/bin/env bash
# The foundation's GPU check, one call on a GPU host (see README "On a GPU host"):
# doctor, the GPU tests, ceilings and the copy record, and 00_overview executed live.
# Usage: bash scripts/gpu_foundation.sh OUTDIR   (records land in OUTDIR/results, reports in OUTDIR/reports)
set -uo pipefail
out=${1:?usage: gpu_foundation.sh OUTDIR}
mkdir -p "$out/results" "$out/reports"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
rc=0
python3 -m workbench.cli doctor || rc=1
python3 -m pytest -q -m gpu tests/ -p no:cacheprovider || rc=1
python3 -m workbench.cli ceilings --record --out "$out/results" || rc=1
python3 -m workbench.cli bench copy --record --out "$out/results" || rc=1
# Wheels installed with --target keep nbconvert's templates under <target>/share/jupyter.
for d in ${PYTHONPATH//:/ }; do [ -d "$d/share/jupyter" ] && export JUPYTER_PATH=${JUPYTER_PATH:+$JUPYTER_PATH:}$d/share/jupyter; done
if python3 -c "import papermill" 2>/dev/null; then
  python3 -m workbench.cli run 00 --device cuda --out "$out/reports" || rc=1
else
  echo "papermill missing: carry .whl (shared/tools/gpu-wheels.sh) to execute notebooks live"
fi
exit $rc
