"""A/B of the v9 / v9p wo GEMMs (row-owned CTAs, one kernel per call) against the recorded fused path (issue 3).

For each M: every v9p build that serves M (and the v9 ones with --slices), validated against the fp32 GEMM of the
dequantized weight (rel-L2 1e-3) on the wo shape, then timed as the record times the fused path (CUDA-graph replay
of 12 calls, two weights in turn so no call finds its weight in L2), in interleaved rounds, beside: the recorded
dispatcher (`wo_nvfp4` with this GPU model's tuning), both with ordinary launches and with PDL, the diagnostic
twins (no output or a meaningless one, never validated) and cuBLAS bf16. Prints each time beside the weight-read bound (bytes over the measured copy
bandwidth) and the ratio to cuBLAS bf16; writes $OUT/wo_v9.json. Diagnostic: no record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_v9.py [--m 1,8] [--rounds 5] [--slices]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from workbench.bench import current_ceilings
from workbench.bench.timing import time_variants
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo
from workbench.techniques import wo_gemm_v9 as v9


def run_case(M, N, K, wq, pw, w_bf, ceil, tuning, args) -> dict:
    """Validate and time every variant at M; print the table; return the case's rows."""
    x = wo.make_activations(M, K, seed=100 + M)
    ref = wo.reference(x, nv.dequantize(wq[0], torch.float32))
    valid: dict = {}
    fns: dict = {}
    o = wo.wo_nvfp4(x, pw[0])
    valid["recorded"] = wo.validate(o, ref)["rel_l2"]
    fns["recorded"] = [lambda i=i: wo.wo_nvfp4(x, pw[i]) for i in range(2)]
    if not args.no_pdl:
        for o in [wo.wo_nvfp4(x, pw[0], enable_pdl=True) for _ in range(4)]:
            valid["recorded_pdl"] = max(valid.get("recorded_pdl", 0.0), wo.validate(o, ref)["rel_l2"])
        fns["recorded_pdl"] = [lambda i=i: wo.wo_nvfp4(x, pw[i], enable_pdl=True) for i in range(2)]
    cands = (v9.v9_candidates(M) if args.slices else []) + [c for c in v9.v9p_candidates(M) if c.cl == 1 or args.clusters]
    if args.only:
        cands = [c for c in cands if any(o in str(c) for o in args.only.split(","))]
    for cfg in cands:
        gemm = v9.w4a16_gemm_v9p if isinstance(cfg, v9.V9PConfig) else v9.w4a16_gemm_v9
        outp = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
        r = wo.validate(gemm(x, pw[0], cfg, out=outp), ref)
        valid[str(cfg)] = r["rel_l2"]
        if not r["passed"]:
            print(f"  M={M} {cfg}: FAILED validation (rel-L2 {r['rel_l2']:.3g}); not timed", flush=True)
            continue
        fns[str(cfg)] = [lambda i=i, c=cfg, f=gemm: f(x, pw[i], c) for i in range(2)]
        if not args.no_pdl:
            outs = [gemm(x, pw[0], cfg, enable_pdl=True) for _ in range(6)]
            rel = max(wo.validate(o, ref)["rel_l2"] for o in outs)
            valid[f"{cfg}_pdl"] = rel
            if rel <= 1e-3:
                fns[f"{cfg}_pdl"] = [lambda i=i, c=cfg, f=gemm: f(x, pw[i], c, enable_pdl=True) for i in range(2)]
    if M <= 8:
        for cfg in v9.V9_DIAGNOSTICS if args.slices_diag else []:
            fns[str(cfg)] = [lambda i=i, c=cfg: v9.w4a16_gemm_v9(x, pw[i], c) for i in range(2)]
        for cfg in [c for c in v9.V9P_DIAGNOSTICS if c.cl == 1 or args.clusters]:
            fns[str(cfg)] = [lambda i=i, c=cfg: v9.w4a16_gemm_v9p(x, pw[i], c) for i in range(2)]
    fns["cublas_bf16"] = lambda: x @ w_bf.t()
    t = time_variants(fns, rounds=args.rounds, reps=10 * args.rounds, graph=True, inner=12, max_seconds=4.0)
    bound = ceil.bound_us(bytes=wo.case_bytes(M, "nvfp4", N, K), flops=wo.flops(M, N, K))
    base = t["cublas_bf16"].median_us
    print(f"M={M}: bound {bound:.2f} us, cuBLAS bf16 {base:.2f} us (3x needs {base / 3:.2f})", flush=True)
    rows = {}
    for name, tm in t.items():
        rows[name] = {"median_us": round(tm.median_us, 3), "p20_us": round(tm.p20_us, 3),
                      "p80_us": round(tm.p80_us, 3), "vs_cublas_bf16": round(base / tm.median_us, 3),
                      "pct_of_bound": round(100 * bound / tm.median_us, 1), "rel_l2": valid.get(name)}
        rl = f"rel-L2 {valid[name]:.2e}" if name in valid else "not validated" if "diag" in name else ""
        print(f"  {name:32s} {tm.median_us:8.2f} us  {base / tm.median_us:5.2f}x bf16  "
              f"{100 * bound / tm.median_us:5.1f}% of bound  {rl}", flush=True)
    return {"bound_us": round(bound, 3), "rows": rows, "tuning": str(tuning.get(M)) if tuning else None}


def v9_setup(v9_streams: bool = True):
    """(device name, ceilings, NVFP4 weights, prepared weights, v9p grid): two wo-shape weights (seeds 0, 1) for calls
    that use them in turn, their v9p streams for this GPU's grid built (and v9's with v9_streams), so no timed call
    builds one. Prints the device line."""
    N, K = wo.N_OUT, wo.K_IN
    dev = torch.cuda.get_device_name()
    ceil = current_ceilings()
    print(f"{dev}: copy {ceil.copy_TBps:.3f} TB/s, bf16 {ceil.bf16_TFLOPs:.0f} TFLOP/s", flush=True)
    wq = [nv.quantize(wo.make_weight(N, K, seed=s), "tensor") for s in (0, 1)]
    pw = [wo.prepare_weight(q) for q in wq]
    grid = min(torch.cuda.get_device_properties(0).multi_processor_count, N // 8)
    for p in pw:
        if v9_streams:
            v9.v9_stream(p)
        v9.v9p_stream(p, grid)
    return dev, ceil, wq, pw, grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", default="1,8", help="comma-separated M values (<= 32)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-pdl", action="store_true")
    ap.add_argument("--slices", action="store_true", help="also the v9 builds (weight as the B operand)")
    ap.add_argument("--clusters", action="store_true", help="also the v9p builds on clusters of two CTAs")
    ap.add_argument("--only", default="", help="time only the builds whose names contain one of these (comma-separated)")
    ap.add_argument("--slices-diag", action="store_true", help="also time the v9 (weight as B) diagnostic twins")
    args = ap.parse_args()
    ms = [int(v) for v in args.m.split(",")]
    N, K = wo.N_OUT, wo.K_IN
    dev, ceil, wq, pw, _ = v9_setup(v9_streams=True)
    w_bf = nv.dequantize(wq[0], torch.bfloat16)
    tuning = wo.device_tuning()
    out: dict = {"device": dev, "copy_TBps": ceil.copy_TBps, "commit": os.environ.get("WORKBENCH_GIT_COMMIT"),
                 "cases": {}}
    for M in ms:
        out["cases"][f"wo_M{M}"] = run_case(M, N, K, wq, pw, w_bf, ceil, tuning, args)
    dst = Path(os.environ.get("OUT", ".")) / "wo_v9.json"
    dst.write_text(json.dumps(out, indent=1))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
