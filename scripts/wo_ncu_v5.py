"""Nsight Compute on the dispatcher's fused kernels for the wo shape (issue 3): one launch each of the
configs the record chose at M = 8, 32, 64 (data/results/wo_gemm.json, fused_tuning), or the [M, config]
pairs given as JSON, warp-stall details and the spread of SM active cycles (min / avg / max: how unequal
the CTAs' finishing times are) included. Writes $OUT/ncu_v5v6.txt.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/wo_ncu_v5.py ['[[32, "v5_..."], ...]']
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import run_ncu  # noqa: E402

DRIVER = r"""
import json, sys, torch
sys.path.insert(0, '.')
from workbench.techniques import nvfp4, wo_gemm as wo, wo_gemm_v5 as v5, wo_gemm_v7 as v7
chosen = json.loads(sys.argv[1])
q = nvfp4.quantize(wo.make_weight(7168, 16384, seed=10), 'tensor')
pw = wo.prepare_weight(q)
v5.v5_stream(pw)
cands = {str(c): c for M in (1, 8, 32, 64) for c in wo.v6_candidates(M) + v5.v5_candidates(M) + v5.V5_DIAGNOSTICS
         + v7.v7_candidates(M)}
for M, name in chosen:
    x = wo.make_activations(int(M), 16384, seed=1)
    wo.wo_nvfp4(x, pw, tuning={int(M): cands[name]})
torch.cuda.synchronize()
"""


def main() -> int:
    out = Path(os.environ.get("OUT", "/tmp/wo_ncu_v5"))
    out.mkdir(parents=True, exist_ok=True)
    rec = json.loads(Path("data/results/wo_gemm.json").read_text())
    chosen = (json.loads(sys.argv[1]) if len(sys.argv) > 1 else
              [[int(m), n] for m, n in rec["fused_tuning"].items() if m in ("8", "32", "64")])
    print("configs", chosen, flush=True)
    args = ["--section", "SpeedOfLight", "--section", "WarpStateStats", "--section", "SchedulerStats",
            "--section", "ComputeWorkloadAnalysis", "--print-details", "all",
            "--metrics", "sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,"
            "dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors_op_red.sum",
            "-k", "regex:w4a16_v[567]", sys.executable, "-c", DRIVER, json.dumps(chosen)]
    return run_ncu(args, out / "ncu_v5v6.txt", (
        "w4a16_v", "Duration", "Elapsed", "SM Active", "Stall", "Issued Warp", "Eligible", "Pipe", "DRAM Th", "sm__cycles",
        "dram__", "lts__"), timeout=400, tail=9000)


if __name__ == "__main__":
    sys.exit(main())
