"""One device call for the MoE tail fusions: GPU tests, then the validated benchmark, then a summary.

Usage on the GPU host (repo root): PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_moe_tail.py
Writes $OUT/moe_tail.json (the record; schema-validated later on the workstation when jsonschema is
missing here), $OUT/pytest.log. Env: WB_GIT_COMMIT (the commit the tree was sent from), MOE_TAIL_TOKENS
(comma-separated T list), MOE_TAIL_SKIP_TESTS=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("OUT", "/tmp/moe_tail_out"))
OUT.mkdir(parents=True, exist_ok=True)
t_start = time.time()


def stamp(msg: str) -> None:
    print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)


if os.environ.get("MOE_TAIL_SKIP_TESTS") != "1":
    stamp("pytest -m gpu tests/test_moe_tail.py")
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-x", "-p", "no:cacheprovider",
                        "tests/test_moe_tail.py"], capture_output=True, text=True)
    (OUT / "pytest.log").write_text(r.stdout + r.stderr)
    print("\n".join((r.stdout + r.stderr).strip().splitlines()[-6:]), flush=True)
    if r.returncode != 0:
        print((r.stdout + r.stderr)[-6000:])
        sys.exit("GPU tests failed: no benchmark")

import torch  # noqa: E402

from workbench.bench import current_ceilings  # noqa: E402
from workbench.bench.records import make_record  # noqa: E402
from workbench.techniques import moe_tail as M  # noqa: E402

stamp(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
ceil = current_ceilings()
stamp(f"ceilings {ceil}")
tokens = tuple(int(t) for t in os.environ.get("MOE_TAIL_TOKENS", "32,256,1024,4096").split(","))
cases = M.benchmark_reduce(tokens) + M.benchmark_expand(tokens)
stamp("benchmark done")

rec = make_record("moe_tail", cases, M.SOURCES, ceilings=ceil, command="python3 scripts/gpu_moe_tail.py")
if not rec.get("git_commit"):
    rec["git_commit"] = os.environ.get("WB_GIT_COMMIT")
path = OUT / "moe_tail.json"
path.write_text(json.dumps(rec, indent=1) + "\n")
stamp(f"wrote {path}")

# ---- summary: every variant beside its bound, and the criteria ----------------------------
print(f"\n{'case':14s} {'variant':20s} {'median_us':>10s} {'bound_us':>9s} {'x bound':>8s} {'stream_us':>10s}")
for c in cases:
    for v, t in c.variants.items():
        b = c.params["bounds_us"].get(v, c.bound_us)
        print(f"{c.name:14s} {v:20s} {t.median_us:10.2f} {b:9.2f} {t.median_us / b:8.2f} "
              f"{c.params['stream_us'][v]:10.2f}")
    print(f"{'':14s} validation {'passed' if c.validation['passed'] else 'FAILED'}: "
          + ", ".join(f"{k}={v}" for k, v in c.validation.items() if k != "passed"))

by = {c.name: c for c in cases}
print("\ncriteria:")
for T in tokens:
    r = by[f"reduce_T{T}"]
    med = {k: t.median_us for k, t in r.variants.items()}
    print(f"  reduce T={T}: optimized {med['optimized'] / r.bound_us:.2f}x bound; compile/optimized "
          f"{med['torch_compile'] / med['optimized']:.2f}x (graph), "
          f"{r.params['stream_us']['torch_compile'] / r.params['stream_us']['optimized']:.2f}x (stream); "
          f"compile_static/optimized {med['torch_compile_static'] / med['optimized']:.2f}x (graph), "
          f"{r.params['stream_us']['torch_compile_static'] / r.params['stream_us']['optimized']:.2f}x (stream); "
          f"dequant_then_reduce/optimized_nvfp4 {med['dequant_then_reduce'] / med['optimized_nvfp4']:.2f}x; "
          f"max_ulp opt {r.validation['optimized.max_ulp']} nvfp4 {r.validation['optimized_nvfp4.max_ulp']}")
    e = by[f"expand_T{T}"]
    print(f"  expand T={T}: unfused/optimized {e.speedup:.2f}x, optimized "
          f"{e.variants['optimized'].median_us / e.bound_us:.2f}x bound, passed {e.validation['passed']}; "
          f"memset alone {e.params['memset_alone_us']:.2f} us")
stamp("end")
