"""Diagnostic GPU session (issue 3): how fast does the wo weight stream run without the math?
Times, at M = 1 on the wo shape, the v6 diagnostic kernels (stream only; stream + decode: they compute
no output and are never recorded) beside the validated v4 and v6 kernels, then Nsight Compute warp
stall details of v4 and v6. Writes $OUT/diag.json and $OUT/ncu_diag.txt.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_diag.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_diag"))
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    from workbench.bench.ceilings import measure_copy_TBps
    from workbench.runtime import device_info
    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo

    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-x", "tests/test_wo_gemm.py", "-k", "v6"],
                       capture_output=True, text=True, timeout=300)
    print(p.stdout[-2500:], p.stderr[-1500:], flush=True)
    if p.returncode:
        return 1
    log(f"device {device_info()}")
    copy = measure_copy_TBps()
    N, K = wo.N_OUT, wo.K_IN
    wq = [nvfp4.quantize(wo.make_weight(N, K, seed=10 + i), "tensor") for i in range(3)]
    pw = [wo.prepare_weight(q) for q in wq]
    bound = wo.weight_bytes("nvfp4") / (copy * 1e6)
    res = {"device": device_info(), "copy_TBps": copy, "bound_us": bound, "M": {}}
    for M in (1, 8):
        best = None
        x = wo.make_activations(M, K, seed=7)
        ref = wo.reference(x, nvfp4.dequantize(wq[0], torch.float32))
        rows = {}
        fns = {"v4_best": lambda x, p: wo.w4a16_gemm_v4(x, p, wo.V4Config(1, 1, 4, 4, False, True, 4))}
        for c in wo.v6_candidates(M) + wo.V6_DIAGNOSTICS:
            fns[str(c)] = lambda x, p, c=c: wo.w4a16_gemm_v6(x, p, c)
        for name, fn in fns.items():
            if "diag" not in name:
                v = wo.validate(fn(x, pw[0]), ref)
                assert v["passed"], (name, v)
            t = wo._time([lambda i=i, fn=fn, x=x: fn(x, pw[i]) for i in range(3)])
            rows[name] = t.median_us
            if "diag" not in name and (best is None or t.median_us < best[1]):
                best = (name, t.median_us)
            log(f"M={M} {name:36s} {t.median_us:8.2f} us  {100 * bound / t.median_us:5.1f}% of bound"
                + ("  (diagnostic: no output)" if "diag" in name else ""))
        res["M"][str(M)] = rows
        log(f"M={M} best {best}")
    (out_dir / "diag.json").write_text(json.dumps(res, indent=1))
    if "--ncu" not in sys.argv:
        log("done")
        return 0
    pw = wq = None
    torch.cuda.empty_cache()
    drv = ("import sys, torch; sys.path.insert(0, '.');"
           "from workbench.techniques import wo_gemm as wo, nvfp4;"
           "q = nvfp4.quantize(wo.make_weight(7168, 16384, seed=10), 'tensor'); p = wo.prepare_weight(q);"
           "x = wo.make_activations(1, 16384, seed=1);"
           "wo.w4a16_gemm_v4(x, p, wo.V4Config(1, 1, 4, 4, False, True, 4));"
           "wo.w4a16_gemm_v6(x, p, wo.V6Config(1, 8, 5, 1, 4)); torch.cuda.synchronize()")
    cmd = ["ncu", "--clock-control", "none", "--section", "WarpStateStats", "--section", "SpeedOfLight",
           "--section", "LaunchStats", "--print-details", "all", "-k", "regex:w4a16_v[46]", "-c", "2",
           sys.executable, "-c", drv]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    (out_dir / "ncu_diag.txt").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    print(p.stdout[-6000:], p.stderr[-800:])
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
