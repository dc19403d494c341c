"""The swizzled NVFP4 quantizer on this GPU: the v5 configs beside v7 (kernels/nvfp4_quant_exp.cu: v5 with
persistent CTAs, `grid` CTAs walking the 128-row x NB-block tiles) at several grid sizes, including one CTA per tile
(v5's launch: the control for the code itself). A measured step, not a record.

Every v7 build is checked bit-exact against the reference (the benchmark's inputs at both shapes, every tie point,
an odd shape) at every grid size before it is timed. Times: CUDA-graph replay as the nvfp4 benchmark does,
interleaved rounds, median; each beside the bytes-over-copy-bandwidth bound of this GPU.

    PYTHONPATH=$PWD python3 scripts/gpu_quant_exp.py [--rounds 3]    (writes $OUT/quant_exp.json)
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
V5_CONFIGS = ((8, 4, False), (16, 2, False), (32, 2, False))
GRIDS_PER_SM = (4, 6, 8, 12, 0)  # CTAs per SM; 0: one CTA per tile


def v7_builds() -> list[tuple[int, int]]:
    return [tuple(int(a) for a in e.split("<", 1)[1].rstrip(">").split(",")) for e in name_expressions("nvfp4_quant_exp")]


def quantize_v7(x, g, out: nv.NVFP4Tensor, nb: int, u: int, per_sm: int) -> nv.NVFP4Tensor:
    M, K = x.shape
    n_tiles = -(-(K // nv.BLOCK) // nb) * -(-M // 128)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    grid = n_tiles if per_sm == 0 else min(n_tiles, per_sm * sms)
    launch(get_kernel("nvfp4_quant_exp", f"nvfp4_quantize_v7<{nb}, {u}>"), grid, 256,
           (x, M, K, g, 0, out.codes, out.scales, 1))
    return out


def fresh_out(M, K, g) -> nv.NVFP4Tensor:
    return nv.NVFP4Tensor(codes=torch.empty((M, K // 2), dtype=torch.uint8, device="cuda"),
                          scales=torch.zeros(nv.swizzled_size(M, K), dtype=torch.uint8, device="cuda"),
                          global_scale=g, layout="swizzled", shape=(M, K))


def exact(x, g, fn) -> bool:
    ref = nv.quantize_reference(x, g, "linear")
    ref_sw = nv.NVFP4Tensor(ref.codes, nv.swizzle_scales(ref.scales), ref.global_scale, "swizzled", tuple(x.shape))
    return nv.compare_exact(fn(x, g, fresh_out(*x.shape, g)), ref_sw)["passed"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "/tmp/quant_exp_out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    dev, ceil = device_info(), current_ceilings()
    print(f"device {dev['name']}, copy {ceil.copy_TBps:.3f} TB/s", flush=True)
    builds = [(nb, u, k) for nb, u in v7_builds() for k in GRIDS_PER_SM]
    name = lambda b: f"v7_nb{b[0]}u{b[1]}_" + (f"{b[2]}perSM" if b[2] else "tilegrid")  # noqa: E731
    odd = nv.make_inputs(300, 7184, seed=5)
    ties = nv.make_tie_inputs(256, 2048, seed=6)
    small = (("odd_300x7184", odd, nv.global_scale_from_amax(odd.float().abs().amax()).cuda()),
             ("ties_256x2048", ties, torch.tensor(1.0, device="cuda")))
    validation = {f"{name(b)}.{lab}": exact(x, g, lambda x, g, o, b=b: quantize_v7(x, g, o, *b))
                  for b in builds for lab, x, g in small}
    result = {"device": dev, "copy_TBps": ceil.copy_TBps, "git_commit": os.environ.get("WORKBENCH_GIT_COMMIT"),
              "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": args.rounds, "cases": {}}
    for M, K in SHAPES:
        x = nv.make_inputs(M, K, seed=M + K)
        g = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
        fns = {f"v5_nb{c[0]}u{c[1]}": (lambda x, g, o, c=c: nv.quantize(x, g, "swizzled", out=o, kernel="v5", config=c))
               for c in V5_CONFIGS}
        fns.update({name(b): (lambda x, g, o, b=b: quantize_v7(x, g, o, *b)) for b in builds})
        for n, fn in fns.items():
            validation[f"{n}.{M}x{K}"] = exact(x, g, fn)
        buf = fresh_out(M, K, g)
        samples = {n: [] for n in fns}
        for _ in range(args.rounds):
            for n, fn in fns.items():
                samples[n].append(time_cuda(lambda fn=fn, x=x, g=g, buf=buf: fn(x, g, buf), reps=20, graph=True, inner=5, l2="warm",
                                            max_seconds=2.0).median_us)
        bound = ceil.bound_us(bytes=nv.quantize_bytes(M, K))
        rows = {n: {"median_us": round(statistics.median(s), 2), "rounds_us": [round(v, 2) for v in s],
                    "pct_of_bound": round(100 * bound / statistics.median(s), 1),
                    "validated": all(v for k, v in validation.items() if k.startswith(n + "."))}
                for n, s in samples.items()}
        result["cases"][f"quantize_{M}x{K}"] = {"bound_us": round(bound, 2), "bytes": nv.quantize_bytes(M, K),
                                                 "variants": rows}
        print(f"\nquantize {M}x{K}: bound {bound:.2f} us", flush=True)
        for n, r in sorted(rows.items(), key=lambda kv: kv[1]["median_us"]):
            print(f"  {n:28s} {r['median_us']:8.2f} us  {r['pct_of_bound']:5.1f}% of bound  exact {r['validated']}")
    result["validation"] = validation
    bad = [k for k, v in validation.items() if not v]
    print(f"\nvalidation: {len(validation) - len(bad)} of {len(validation)} passed" + (f"; FAILED: {bad}" if bad else ""))
    (out_dir / "quant_exp.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
