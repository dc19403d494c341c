"""GPU session for the wo GEMM v7 / v8 kernels (the weight as the wgmma B operand, issue 3): their GPU tests,
then every v8 candidate (and v7's at M >= 32) at M = 1, 8, 32, 64 beside the recorded dispatcher config (v5) and cuBLAS bf16 / fp8
torch._scaled_mm, each validated on two weight sets, then timed by graph replay with the weight sets
rotated, all in one process on one card. Writes $OUT/v7_sweep.json. Diagnostic: nothing here is a record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_v7.py [--skip-tests] [--strict] [--m 32,64]
(--strict: stop when a GPU test fails; by default the sweep runs and validates each config anyway)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import baselines, log, wo_weight_sets  # noqa: E402


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_v7"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if "--skip-tests" not in sys.argv:
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_wo_gemm_v7.py", "tests/test_wo_gemm_v8.py"],
                           capture_output=True, text=True, timeout=300)
        print(p.stdout[-3000:], p.stderr[-1500:], flush=True)
        log(f"v7 GPU tests rc={p.returncode}")
        if p.returncode != 0 and "--strict" in sys.argv:
            return 1
    import torch

    from workbench.bench.ceilings import measure_copy_TBps
    from workbench.runtime import device_info
    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5
    from workbench.techniques import wo_gemm_v7 as v7
    from workbench.techniques import wo_gemm_v8 as v8

    ms = [int(m) for m in sys.argv[sys.argv.index("--m") + 1].split(",")] if "--m" in sys.argv else [1, 8, 32, 64]
    copy = measure_copy_TBps()
    wq, pw, w_bf, fp8w = wo_weight_sets()
    for p_ in pw:
        v5.v5_stream(p_, 256, 16, True)
    bound_us = wo.weight_bytes("nvfp4") / (copy * 1e6)
    log(f"device {device_info()}; copy {copy:.3f} TB/s; weight-read bound {bound_us:.2f} us; {len(pw)} sets")
    rec = json.loads(Path("data/results/wo_gemm.json").read_text())["fused_tuning"]
    known = {str(c): c for M in (1, 8, 32, 64) for c in v5.v5_candidates(M)}
    result = {"device": device_info(), "copy_TBps": copy, "weight_bound_us": bound_us, "cases": {}}
    for M in ms:
        x, ref, base = baselines(M, wo.K_IN, wq, w_bf, fp8w)
        ref1 = wo.reference(x, nvfp4.dequantize(wq[1], torch.float32))
        runs = []
        if str(M) in rec and rec[str(M)] in known:
            runs.append((rec[str(M)], lambda x, p, c=known[rec[str(M)]]: v5.w4a16_gemm_v5(x, p, c)))
        for cfg in v8.v8_candidates(M):
            runs.append((str(cfg), lambda x, p, c=cfg: v8.w4a16_gemm_v8(x, p, c)))
            runs.append((str(cfg) + "_pdl", lambda x, p, c=cfg: v8.w4a16_gemm_v8(x, p, c, enable_pdl=True)))
        for cfg in v7.v7_candidates(M) if M > 8 else []:
            runs.append((str(cfg), lambda x, p, c=cfg: v7.w4a16_gemm_v7(x, p, c)))
        case = {"variants": {"cublas_bf16": base["cublas_bf16"], "torch_fp8": base["torch_fp8"]}, "rejected": {}}
        for name, fn in runs:
            try:
                v = [wo.validate(fn(x, pw[0]), ref), wo.validate(fn(x, pw[1]), ref1)]
            except Exception as e:  # noqa: BLE001 - report and go on
                case["rejected"][name] = repr(e)[:300]
                log(f"  M={M} {name} FAILED {e!r}"[:400])
                continue
            if not all(vv["passed"] for vv in v):
                case["rejected"][name] = [vv["rel_l2"] for vv in v]
                log(f"  M={M} {name} REJECTED rel_l2 {[vv['rel_l2'] for vv in v]}")
                continue
            case["variants"][name] = wo._time([lambda i=i, fn=fn, x=x: fn(x, pw[i]) for i in range(len(pw))]).median_us
        b, f8 = case["variants"]["cublas_bf16"], case["variants"]["torch_fp8"]
        log(f"M={M}: cublas_bf16 {b:.2f} us  torch_fp8 {f8:.2f} us")
        for name, us in sorted(case["variants"].items(), key=lambda kv: kv[1]):
            log(f"   {name:44s} {us:8.2f} us  {b / us:5.2f}x bf16  {f8 / us:5.2f}x fp8  {100 * bound_us / us:5.1f}% of bound")
        result["cases"][str(M)] = case
        (out_dir / "v7_sweep.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
