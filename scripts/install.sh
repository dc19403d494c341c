#!/usr/bin/env bash
# Create .venv and install the workbench into it.
#   bash scripts/install.sh          notebooks stack + the NVRTC compile-only path (for `workbench run`;
#                                    notebooks show each kernel's sm_90a register/spill report)
#   bash scripts/install.sh dev      + test tools (for scripts/test.sh)
# torch: a machine with an NVIDIA GPU keeps (or gets) a CUDA build and the `gpu` extra (CuPy); a machine
# without one gets the CPU build. TORCH_SPEC overrides the torch requirement (default torch==2.13.0, whose
# CPU wheel this workplace keeps on disk; elsewhere point pip at the CPU index, e.g.
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-notebooks}
py=${PYTHON:-python3}
venv=${VENV:-.venv}

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then has_gpu=1; fi

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi

extras="notebooks,compile"
[ "$profile" = "dev" ] && extras="notebooks,dev,compile"
[ "$has_gpu" = 1 ] && extras="$extras,gpu"
"${pip[@]}" -e ".[$extras]"
# papermill executes notebooks with the kernel named "python3": point it at this environment.
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
echo "installed workbench ($extras) into $venv; torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
