"""Diagnostic GPU session for the wo GEMM v4 kernel (issue 3): a wider validated config sweep at
M = 1, 8, 32, 64 beside cuBLAS bf16 and fp8 torch._scaled_mm in the same process, then Nsight Compute
on the best M=1 and M=32 configs (a small driver, scripts/wo_ncu_driver.py). Writes under $OUT:
sweep.json (every timing, validation and the chosen configs), ncu.txt (the profiler's report).

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_profile.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def wo_weights(n: int = 2):
    """n wo-shape NVFP4 weights, prepared, for calls that use them in turn (so no call finds its weight in L2: each
    is ~66 MB), and the first one dequantized to fp32 for the reference. Returns (pws, wref)."""
    import torch

    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo

    wq = [nvfp4.quantize(wo.make_weight(wo.N_OUT, wo.K_IN, seed=7 + i), "tensor") for i in range(n)]
    return [wo.prepare_weight(q) for q in wq], nvfp4.dequantize(wq[0], torch.float32)


def l2_scrubber():
    """A callable that evicts L2 by reading 2.5x L2 of other data. A read, not timing.l2_flush_buffer's zeroing: the
    lines it leaves are clean, so no write-back of the scrub's own data lands inside the call timed after it."""
    import torch

    junk = torch.randn(int(2.5 * torch.cuda.get_device_properties(0).L2_cache_size) // 2, device="cuda",
                       dtype=torch.bfloat16)
    return lambda: junk.sum()


def run_ncu(args: list[str], report: Path, keep: tuple[str, ...], timeout: int = 500, tail: int = 12000) -> int:
    """Nsight Compute (`ncu --clock-control none` + args: sections, metrics, a kernel filter and the command to
    profile): the whole report to `report`, then the lines that contain one of `keep` (their last `tail` characters)
    and the end of stderr printed. Returns ncu's exit status."""
    p = subprocess.run(["ncu", "--clock-control", "none", *args], capture_output=True, text=True, timeout=timeout)
    report.write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    lines = [ln for ln in p.stdout.splitlines() if any(k in ln for k in keep)]
    print("\n".join(lines)[-tail:], p.stderr[-1500:])
    return p.returncode


def capture_calls(fns: list, calls: int):
    """A CUDA graph of `calls` back-to-back calls of fns in turn (fns rotate weights, so no call finds its weight in
    L2), captured on a side stream after one warm call each (streams built, kernels loaded), then replayed once.
    The capture time_cuda's graph mode does, for the diagnostics that replay the graph their own way."""
    import torch

    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
        torch.cuda.synchronize()
        with torch.cuda.graph(g, stream=side):
            for i in range(calls):
                fns[i % len(fns)]()
    torch.cuda.synchronize()
    g.replay()
    torch.cuda.synchronize()
    return g


def lean_builds(M: int, lean: int) -> list:
    """The v5 lean builds (V5_KERNELS_LEAN) with LEAN value `lean` at the smallest token tile that serves M."""
    from workbench.techniques import wo_gemm_v5 as v5

    tokps = [k.tokp for k in v5.V5_KERNELS_LEAN if k.tokp >= M and k.lean == lean]
    if not tokps:
        raise SystemExit(f"M={M}: no v5 lean build with LEAN {lean} (V5_KERNELS_LEAN)")
    return [c for c in v5.V5_KERNELS_LEAN if c.lean == lean and c.tokp == min(tokps)]


def launch_work(M: int) -> tuple[tuple[bool, int, int], bool]:
    """((red, s0, grab), tuned): how this GPU model's tuned config at M launches its work (data/tuned/wo_gemm.json:
    static shares, or s0 static units then grabs), else the H100 rule (static at M >= 32, 6 static units then grabs
    of 1 below); tuned says which."""
    import torch

    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    table = wo.table_tuning(torch.cuda.get_device_name())
    t = wo._fused_config(M, table) if table else None
    if isinstance(t, v5.V5Config):
        return (t.red, t.s0, t.grab), True
    return ((True, 0, 0) if M >= 32 else (True, 6, 1)), False


def wo_weight_sets():
    """The wo-shape weights of a sweep, enough copies that rotating them keeps the weight out of L2
    (more than 3x L2 each kind): NVFP4 sets (quantized and prepared), one bf16 dequantized copy for cuBLAS,
    fp8 (weight, scale) sets. Returns (wq, pw, w_bf, fp8w)."""
    import torch

    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo

    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    n_nv = max(2, math.ceil(3 * l2 / wo.weight_bytes("nvfp4")))
    n_fp8 = max(1, math.ceil(3 * l2 / wo.weight_bytes("fp8")))
    w_true = [wo.make_weight(wo.N_OUT, wo.K_IN, seed=10 + i) for i in range(max(n_nv, n_fp8))]
    wq = [nvfp4.quantize(w, "tensor") for w in w_true[:n_nv]]
    pw = [wo.prepare_weight(q) for q in wq]
    w_bf = nvfp4.dequantize(wq[0], torch.bfloat16)
    fp8w = [wo.fp8_prepare_weight(w) for w in w_true[:n_fp8]]
    del w_true
    torch.cuda.empty_cache()
    return wq, pw, w_bf, fp8w


def baselines(M: int, K: int, wq, w_bf, fp8w) -> tuple:
    """What every wo diagnostic measures first at M: x, the fp32 reference on weight set 0, and the
    baselines {cublas_bf16 (us), cublas_bf16_rel_l2, torch_fp8 (us, weights rotated)} by graph replay."""
    import torch

    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo

    x = wo.make_activations(M, K, seed=100 + M)
    ref = wo.reference(x, nvfp4.dequantize(wq[0], torch.float32))
    x8, sx = wo.fp8_per_tensor(wo.pad_rows(x, 16))
    rel_l2 = wo.validate(x @ w_bf.t(), ref, 5e-3)["rel_l2"]
    base = {"cublas_bf16": wo._time([lambda: x @ w_bf.t()]).median_us, "cublas_bf16_rel_l2": rel_l2,
            "torch_fp8": wo._time([lambda i=i: wo.fp8_scaled_mm(x8, sx, fp8w[i][0], fp8w[i][1])
                                   for i in range(len(fp8w))]).median_us}
    return x, ref, base


def sweep_candidates(M: int):
    """Every instantiated v4 kernel whose token tile suits M, at 1x and 2x its min CTAs per SM."""
    from workbench.techniques import wo_gemm as wo

    nt = wo.v4_nt_for(M)
    out = []
    for k in wo.V4_KERNELS:
        if k.nt != nt:
            continue
        for c in sorted({k.minb, 2 * k.minb} if k.minb <= 4 else {k.minb}):
            out.append(k.with_ctas(c))
    return out


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_profile"))
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch

    from workbench.bench.ceilings import measure_copy_TBps
    from workbench.runtime import device_info, load_module
    from workbench.techniques import wo_gemm as wo

    log(f"device {device_info()}")
    mod = load_module("wo_gemm")
    names = {low: expr for expr, low in mod.compiled.lowered.items()}
    regs = {}
    for low, r in mod.compiled.resources.items():
        n = names.get(low, low)
        if "w4a16_v4" in n:
            regs[n] = [r.registers, r.spill_stores, r.spill_loads]
            log(f"  {n} regs {r.registers} spills {r.spill_stores}/{r.spill_loads}")
    copy = measure_copy_TBps()
    log(f"copy {copy:.3f} TB/s")

    N, K = wo.N_OUT, wo.K_IN
    wq, pw, w_bf, fp8w = wo_weight_sets()
    n_nv, n_fp8 = len(pw), len(fp8w)
    log(f"weights ready ({n_nv} nvfp4 sets rotated, {n_fp8} fp8)")
    bound_us = wo.weight_bytes("nvfp4") / (copy * 1e6)

    result = {"device": device_info(), "copy_TBps": copy, "weight_bound_us": bound_us, "regs": regs, "cases": {}}
    for M in (1, 8, 32, 64):
        x, ref, base = baselines(M, K, wq, w_bf, fp8w)
        case = {"v4": {}, "rejected": {}, **base}
        for cfg in sweep_candidates(M):
            o = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
            v = wo.validate(wo.w4a16_gemm_v4(x, pw[0], cfg, out=o), ref)
            v2 = wo.validate(wo.w4a16_gemm_v4(x, pw[0], cfg), ref)  # workspace left clean
            if not (v["passed"] and v2["passed"]):
                case["rejected"][str(cfg)] = [v["rel_l2"], v2["rel_l2"]]
                log(f"  M={M} {cfg} REJECTED rel_l2 {v['rel_l2']:.3g} / {v2['rel_l2']:.3g}")
                continue
            t = wo._time([lambda i=i, cfg=cfg, x=x, p=pw: wo.w4a16_gemm_v4(x, p[i], cfg)
                          for i in range(n_nv)])
            case["v4"][str(cfg)] = {"us": t.median_us, "rel_l2": v["rel_l2"], "cfg": [
                cfg.nt, cfg.mt, cfg.warps, cfg.minb, cfg.db, cfg.xpf, cfg.ctas_per_sm]}
        best = min(case["v4"].items(), key=lambda kv: kv[1]["us"])
        case["best"] = best[0]
        b = case["cublas_bf16"]
        log(f"M={M}: cublas_bf16 {b:.2f} us  torch_fp8 {case['torch_fp8']:.2f} us  weight bound {bound_us:.2f} us")
        for name, r in sorted(case["v4"].items(), key=lambda kv: kv[1]["us"]):
            log(f"   {name:30s} {r['us']:8.2f} us  {b / r['us']:5.2f}x bf16  {case['torch_fp8'] / r['us']:5.2f}x fp8"
                f"  {100 * bound_us / r['us']:5.1f}% of copy bw")
        result["cases"][str(M)] = case
        (out_dir / "sweep.json").write_text(json.dumps(result, indent=1))

    # Nsight Compute on the best configs of M=1 and M=32 (one launch each; caches flushed between passes)
    spec = [[M] + result["cases"][str(M)]["v4"][result["cases"][str(M)]["best"]]["cfg"] for M in (1, 32)]
    pw = wq = fp8w = w_bf = None  # free the sweep's weights before the profiler's process
    torch.cuda.empty_cache()
    cmd = ["ncu", "--clock-control", "none", "--section", "SpeedOfLight", "--section", "MemoryWorkloadAnalysis",
           "--section", "WarpStateStats", "--section", "SchedulerStats", "--section", "Occupancy",
           "--section", "ComputeWorkloadAnalysis", "-k", "regex:w4a16_v4", "-c", "2",
           sys.executable, "scripts/wo_ncu_driver.py", json.dumps(spec)]
    log("ncu: " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, 250 - (time.time() - T0)))
        (out_dir / "ncu.txt").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
        print(p.stdout[-9000:])
        print(p.stderr[-1500:])
    except subprocess.TimeoutExpired as e:
        (out_dir / "ncu.txt").write_text(f"TIMEOUT\n{e.stdout or ''}")
        log("ncu timed out")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
