"""Nsight Compute on the v9p wo GEMM (issue 3): one launch each of the named v9p configs at M = 1 and 8 on the wo
shape (warp stalls, issue slots, pipe use, DRAM and L2 throughput). Writes $OUT/ncu_v9p.txt. Diagnostic: no record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_v9_ncu.py [names, comma-separated]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import run_ncu  # noqa: E402

DRIVER = r"""
import sys, torch
sys.path.insert(0, '.')
from workbench.techniques import nvfp4, wo_gemm as wo, wo_gemm_v9 as v9
names = sys.argv[1].split(',')
q = nvfp4.quantize(wo.make_weight(7168, 16384, seed=10), 'tensor')
pw = wo.prepare_weight(q)
cands = {str(c): c for c in v9.V9P_KERNELS + v9.V9P_DIAGNOSTICS}
for M in (1, 8):
    x = wo.make_activations(M, 16384, seed=1)
    for n in names:
        v9.w4a16_gemm_v9p(x, pw, cands[n])  # the first call also builds the stream (torch kernels, not profiled)
torch.cuda.synchronize()
"""


def main() -> int:
    out = Path(os.environ.get("OUT", "/tmp/wo_ncu_v9"))
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[1] if len(sys.argv) > 1 else "v9p_s7_nt1_w8_ch8_st4,v9p_s7_nt1_w16_ch8_st4"
    args = ["--section", "SpeedOfLight", "--section", "WarpStateStats", "--section", "SchedulerStats",
            "--section", "ComputeWorkloadAnalysis", "--section", "InstructionStats", "--print-details", "all",
            "--metrics", "sm__cycles_active.avg,dram__throughput.avg.pct_of_peak_sustained_elapsed,"
            "lts__t_sectors_srcunit_tex_op_read.sum,sm__inst_executed.sum,"
            "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,"
            "smsp__inst_executed_pipe_alu.sum,smsp__inst_executed_pipe_fma.sum,smsp__inst_executed_pipe_lsu.sum",
            "-k", "regex:w4a16_v9p", sys.executable, "-c", DRIVER, names]
    return run_ncu(args, out / "ncu_v9p.txt", (
        "w4a16_v", "Duration", "SM Active", "Stall", "Issued Warp", "Eligible", "Issue Slots", "Pipe", "DRAM Th",
        "sm__", "dram__", "lts__", "smsp__", "Warp Cycles", "Executed Ipc", "Active Warps"))


if __name__ == "__main__":
    raise SystemExit(main())
