"""Nsight Compute on the quantizer builds at [8192, 7168] (issue 3): one launch each of the v5 default and the named
builds of kernels/quant_v8.cu, with the speed-of-light, warp-state and scheduler sections (issue-slot use, stall
reasons). Writes $OUT/quant_ncu.txt. A measured step, not a record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/quant_ncu.py 'v8_nb8u4_enc3,...'
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DRIVER = r"""
import sys, torch
sys.path.insert(0, 'scripts'); sys.path.insert(0, '.')
import gpu_quant_v8 as q
from workbench.techniques import nvfp4 as nv
x = nv.make_inputs(8192, 7168, seed=8192 + 7168)
g = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
buf = q.fresh_out(8192, 7168, g)
nv.quantize(x, g, 'swizzled', out=buf, kernel='v5', config=(16, 2, False))
builds = {q.v8_name(b): b for b in q.v8_builds()}
for name in sys.argv[1].split(','):
    q.quantize_v8(x, g, buf, builds[name])
torch.cuda.synchronize()
"""


def main() -> int:
    out = Path(os.environ.get("OUT", "/tmp/quant_ncu"))
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["ncu", "--clock-control", "none", "--section", "SpeedOfLight", "--section", "WarpStateStats",
           "--section", "SchedulerStats", "--section", "Occupancy", "--print-details", "all",
           "--metrics", "smsp__inst_executed.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,"
           "smsp__issue_active.avg.pct_of_peak_sustained_active",
           "-k", "regex:nvfp4_quantize", sys.executable, "-c", DRIVER, sys.argv[1]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    (out / "quant_ncu.txt").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    keep = [ln for ln in p.stdout.splitlines() if any(k in ln for k in (
        "nvfp4_quantize", "Duration", "Stall", "Issued Warp", "Eligible", "Active Warps", "No Eligible", "DRAM Th",
        "dram__", "smsp__", "Achieved Occ", "Warp Cycles Per Issued"))]
    print("\n".join(keep)[-11000:], p.stderr[-1500:])
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
