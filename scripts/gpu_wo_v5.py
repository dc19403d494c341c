"""GPU session for the wo GEMM v5 kernel (wgmma + TMA ring, issue 3): the v5 GPU tests, then a
validated sweep of every v5 config at M = 1, 8, 32, 64 beside cuBLAS bf16, fp8 torch._scaled_mm and
the v4 configs the last record chose, all in one process on one card. Writes $OUT/v5_sweep.json.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_v5.py [--skip-tests] [--ncu]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpu_wo_profile import T0, baselines, log, wo_weight_sets  # noqa: E402 - scripts/ is on sys.path when run as a script

V4_BEST = {1: (1, 1, 4, 4, False, True, 4), 8: (1, 1, 4, 5, False, True, 5), 32: (4, 2, 4, 2, False, False, 2)}


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_v5"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if "--skip-tests" not in sys.argv:
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-x", "tests/test_wo_gemm_v5.py", "tests/test_wo_gemm.py", "-k", "v6 or v4 or v5"],
                           capture_output=True, text=True, timeout=300)
        print(p.stdout[-4000:], p.stderr[-2000:], flush=True)
        log(f"v5 GPU tests rc={p.returncode}")
        if p.returncode != 0:
            return 1

    import torch

    from workbench.bench import time_cuda
    from workbench.bench.ceilings import measure_copy_TBps
    from workbench.runtime import device_info, load_module
    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    log(f"device {device_info()}")
    mod = load_module("wo_gemm_v5")
    names = {low: expr for expr, low in mod.compiled.lowered.items()}
    regs = {names.get(low, low): [r.registers, r.spill_stores] for low, r in mod.compiled.resources.items()}
    copy = measure_copy_TBps()
    log(f"copy {copy:.3f} TB/s")

    K = wo.K_IN
    wq, pw, w_bf, fp8w = wo_weight_sets()  # the same sets as scripts/gpu_wo_profile.py
    n_nv, n_fp8 = len(pw), len(fp8w)
    for p_ in pw:
        v5.v5_stream(p_)
    bound_us = wo.weight_bytes("nvfp4") / (copy * 1e6)
    log(f"weights ready ({n_nv} nvfp4 sets rotated, {n_fp8} fp8); weight-read bound {bound_us:.2f} us")

    result = {"device": device_info(), "copy_TBps": copy, "weight_bound_us": bound_us, "regs": regs, "cases": {}}
    for M in (1, 8, 32, 64):
        x, ref, base = baselines(M, K, wq, w_bf, fp8w)
        case = {"variants": {"cublas_bf16": base["cublas_bf16"], "torch_fp8": base["torch_fp8"]}, "rejected": {},
                "cublas_bf16_rel_l2": base["cublas_bf16_rel_l2"]}
        runs = []
        if M in V4_BEST:
            runs.append(("v4_best", lambda x, p, c=wo.V4Config(*V4_BEST[M]): wo.w4a16_gemm_v4(x, p, c)))
        for cfg in wo.v6_candidates(M):
            runs.append((str(cfg), lambda x, p, c=cfg: wo.w4a16_gemm_v6(x, p, c)))
        for cfg in v5.v5_candidates(M):
            runs.append((str(cfg), lambda x, p, c=cfg: v5.w4a16_gemm_v5(x, p, c)))
        for name, fn in runs:
            try:
                v = wo.validate(fn(x, pw[0]), ref)
                v2 = wo.validate(fn(x, pw[1]), wo.reference(x, nvfp4.dequantize(wq[1], torch.float32)))
            except Exception as e:  # noqa: BLE001 - report and go on
                case["rejected"][name] = repr(e)[:300]
                log(f"  M={M} {name} FAILED {e!r}"[:400])
                continue
            if not (v["passed"] and v2["passed"]):
                case["rejected"][name] = [v["rel_l2"], v2["rel_l2"]]
                log(f"  M={M} {name} REJECTED rel_l2 {v['rel_l2']:.3g} / {v2['rel_l2']:.3g}")
                continue
            t = wo._time([lambda i=i, fn=fn, x=x, p=pw: fn(x, p[i]) for i in range(n_nv)])
            case["variants"][name] = t.median_us
            case.setdefault("rel_l2", {})[name] = v["rel_l2"]
        b, f8 = case["variants"]["cublas_bf16"], case["variants"]["torch_fp8"]
        log(f"M={M}: cublas_bf16 {b:.2f} us  torch_fp8 {f8:.2f} us  weight bound {bound_us:.2f} us")
        for name, us in sorted(case["variants"].items(), key=lambda kv: kv[1]):
            log(f"   {name:34s} {us:8.2f} us  {b / us:5.2f}x bf16  {f8 / us:5.2f}x fp8  {100 * bound_us / us:5.1f}% of bound")
        if "--isolated" in sys.argv and M >= 32:
            # the best v5 config launched alone: sleep between launches, CUDA events around each one
            name = min((k for k in case["variants"] if k.startswith("v5")), key=case["variants"].get)
            fn = dict(runs)[name]
            t_iso = time_cuda([lambda i=i, fn=fn, x=x: fn(x, pw[i]) for i in range(n_nv)], graph=False, reps=40)
            case["isolated_us"] = {name: t_iso.median_us}
            log(f"   eager single launches (L2 flushed, GPU head start) of {name}: {t_iso}")
        result["cases"][str(M)] = case
        (out_dir / "v5_sweep.json").write_text(json.dumps(result, indent=1))
    if "--ncu" in sys.argv:
        best = {M: min(((k, u) for k, u in result["cases"][str(M)]["variants"].items() if k.startswith("v5")),
                       key=lambda kv: kv[1])[0] for M in (64,)}
        log(f"ncu on {best}")
        pw = wq = fp8w = w_bf = None
        torch.cuda.empty_cache()
        drv = ("import sys, torch; sys.path.insert(0, '.');"
               "from workbench.techniques import wo_gemm as wo, wo_gemm_v5 as v5, nvfp4;"
               "q = nvfp4.quantize(wo.make_weight(7168, 16384, seed=10), 'tensor'); p = wo.prepare_weight(q);"
               f"cfgs = {{M: next(c for c in v5.V5_KERNELS if str(c) == n) for M, n in {best!r}.items()}};"
               "[v5.w4a16_gemm_v5(wo.make_activations(M, 16384, seed=1), p, c) for M, c in cfgs.items()];"
               "torch.cuda.synchronize()")
        cmd = ["ncu", "--clock-control", "none", "--section", "SpeedOfLight", "--section", "MemoryWorkloadAnalysis",
               "--section", "WarpStateStats", "--section", "SchedulerStats", "-k", "regex:w4a16_v5", "-c", "2",
               sys.executable, "-c", drv]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, 500 - (time.time() - T0)))
            (out_dir / "ncu_v5.txt").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
            print(p.stdout[-7000:], p.stderr[-1000:])
        except subprocess.TimeoutExpired:
            log("ncu timed out")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
