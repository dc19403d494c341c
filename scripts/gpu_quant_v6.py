"""The swizzled NVFP4 quantizer on this GPU: the recorded v5 configs beside the builds of kernels/nvfp4_quant_v6.cu
(v6: the next row step's loads in flight in registers while the current one is encoded; v6a: STAGES - 1 row steps
ahead in a cp.async ring in shared memory; `_lean`: the encode's power of two by one integer add-and-max) and
their diagnostic twins (the same loads and stores, no encode: the access pattern's floor). A measured step, not a
record.

Every v6 build that computes codes is checked bit-exact against the reference (random inputs of the benchmark
shapes, every tie point, an odd shape with K/16 not a multiple of the CTA's blocks and M not of 128) before it is
timed; the twins compute nothing and are never validated. Times: CUDA-graph replay as the nvfp4 benchmark does,
interleaved rounds, median; each beside the bytes-over-copy-bandwidth bound of this GPU.

    PYTHONPATH=$PWD python3 scripts/gpu_quant_v6.py [--rounds 3]    (writes $OUT/quant_v6.json)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from workbench.bench import current_ceilings, time_cuda
from workbench.runtime import device_info, get_kernel, launch
from workbench.runtime.kernels import name_expressions
from workbench.techniques import nvfp4 as nv

SHAPES = ((8192, 7168), (8192, 16384))
V5_CONFIGS = ((8, 4, False), (16, 2, False), (32, 2, False))  # the default and the H200's fastest


def v6_builds() -> list[tuple]:
    """(kernel, NB, U or STAGES, MODE, MINB, PF) of every instantiated v6 / v6a build (PF: v6's prefetch; v6a's ring
    always runs ahead)."""
    out = []
    for expr in name_expressions("nvfp4_quant_v6"):
        kernel, params = expr.split("<", 1)
        args = [a.strip() for a in params.rstrip(">").split(",")]
        out.append((kernel.strip(), *(int(a) for a in args[:4]), len(args) < 5 or args[4] == "true"))
    return out


def v6_name(b) -> str:
    kernel, nb, u, mode, minb, pf = b
    v = "v6a" if kernel.endswith("v6a") else "v6"
    return (f"{v}_nb{nb}{'s' if v == 'v6a' else 'u'}{u}_minb{minb}" + ("" if pf else "_nopf")
            + {0: "", 1: "_diag_no_encode", 2: "_lean"}[mode])


def quantize_v6(x, g, out: nv.NVFP4Tensor, build) -> nv.NVFP4Tensor:
    """A v6 / v6a build into `out` (swizzled, per-tensor given scale g: fp32 CUDA [])."""
    kernel, nb, u, mode, minb, pf = build
    M, K = x.shape
    grid = (-(-(K // nv.BLOCK) // nb), -(-M // 128), 1)
    expr = f"{kernel}<{nb}, {u}, {mode}, {minb}" + ("" if pf else ", false") + ">"
    launch(get_kernel("nvfp4_quant_v6", expr), grid, 256, (x, M, K, g, 0, out.codes, out.scales, 1))
    return out


def fresh_out(M, K, g) -> nv.NVFP4Tensor:
    return nv.NVFP4Tensor(codes=torch.empty((M, K // 2), dtype=torch.uint8, device="cuda"),
                          scales=torch.zeros(nv.swizzled_size(M, K), dtype=torch.uint8, device="cuda"),
                          global_scale=g, layout="swizzled", shape=(M, K))


def check_exact(build, x, g) -> dict:
    ref = nv.quantize_reference(x, g, "linear")
    ref_sw = nv.NVFP4Tensor(ref.codes, nv.swizzle_scales(ref.scales), ref.global_scale, "swizzled", tuple(x.shape))
    return nv.compare_exact(quantize_v6(x, g, fresh_out(*x.shape, g), build), ref_sw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "/tmp/quant_v6_out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    dev = device_info()
    ceil = current_ceilings()
    print(f"device {dev['name']}, copy {ceil.copy_TBps:.3f} TB/s", flush=True)
    builds = v6_builds()
    # exactness first: the odd shape and the ties, then each benchmark shape below
    validation = {}
    odd = nv.make_inputs(300, 7184, seed=5)  # K / 16 = 449 blocks, M = 300 rows
    ties = nv.make_tie_inputs(256, 2048, seed=6)
    for b in builds:
        if b[3] == 1:
            continue
        for label, x, g in (("odd_300x7184", odd, nv.global_scale_from_amax(odd.float().abs().amax()).cuda()),
                            ("ties_256x2048", ties, torch.tensor(1.0, device="cuda"))):
            validation[f"{v6_name(b)}.{label}"] = check_exact(b, x, g)["passed"]
    result = {"device": dev, "copy_TBps": ceil.copy_TBps, "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "git_commit": os.environ.get("WORKBENCH_GIT_COMMIT"), "rounds": args.rounds, "cases": {}}
    for M, K in SHAPES:
        x = nv.make_inputs(M, K, seed=M + K)  # the benchmark's inputs
        g = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
        for b in builds:
            if b[3] != 1:
                validation[f"{v6_name(b)}.{M}x{K}"] = check_exact(b, x, g)["passed"]
        ref = nv.quantize_reference(x, g, "linear")
        ref_sw = nv.NVFP4Tensor(ref.codes, nv.swizzle_scales(ref.scales), ref.global_scale, "swizzled", (M, K))
        for cfg in V5_CONFIGS:
            q = nv.quantize(x, g, "swizzled", kernel="v5", config=cfg)
            validation[f"v5_nb{cfg[0]}u{cfg[1]}.{M}x{K}"] = nv.compare_exact(q, ref_sw)["passed"]
        buf = fresh_out(M, K, g)
        fns = {f"v5_nb{cfg[0]}u{cfg[1]}": (lambda cfg=cfg, x=x, g=g, buf=buf: nv.quantize(
            x, g, "swizzled", out=buf, kernel="v5", config=cfg)) for cfg in V5_CONFIGS}
        fns.update({v6_name(b): (lambda b=b, x=x, g=g, buf=buf: quantize_v6(x, g, buf, b)) for b in builds})
        samples = {n: [] for n in fns}
        for _ in range(args.rounds):  # interleaved rounds
            for n, fn in fns.items():
                samples[n].append(time_cuda(fn, reps=20, graph=True, inner=5, l2="warm", max_seconds=2.0).median_us)
        bound = ceil.bound_us(bytes=nv.quantize_bytes(M, K))
        rows = {}
        for n, s in samples.items():
            us = statistics.median(s)
            key = next((k for k in validation if k.startswith(n + ".") and k.endswith(f"{M}x{K}")), None)
            rows[n] = {"median_us": round(us, 2), "rounds_us": [round(v, 2) for v in s],
                       "pct_of_bound": round(100 * bound / us, 1),
                       "validated": None if "diag" in n else bool(validation.get(key))}
        result["cases"][f"quantize_{M}x{K}"] = {"bound_us": round(bound, 2), "bytes": nv.quantize_bytes(M, K),
                                                 "variants": rows}
        print(f"\nquantize {M}x{K}: bound {bound:.2f} us", flush=True)
        for n, r in sorted(rows.items(), key=lambda kv: kv[1]["median_us"]):
            print(f"  {n:34s} {r['median_us']:8.2f} us  {r['pct_of_bound']:5.1f}% of bound  valid {r['validated']}",
                  flush=True)
    result["validation"] = validation
    bad = [k for k, v in validation.items() if not v]
    print(f"\nvalidation: {len(validation) - len(bad)} of {len(validation)} passed" + (f"; FAILED: {bad}" if bad else ""))
    (out_dir / "quant_v6.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
