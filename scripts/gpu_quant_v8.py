"""The swizzled NVFP4 quantizer's encoder and feed, step by step, on this GPU: the builds of kernels/quant_v8.cu (v8:
v5's loop with encoder variants ENC 0-4; v11: v5 lean (no per-block overhead, packed clamp); v9: the same encoder fed from shared memory by bulk copies; v10: v9
persistent, the next tiles in flight while one is encoded; see that file)
beside the v5 kernel of nvfp4.cu. A measured step, not a record.

Every build is checked bit-exact against the reference before it is timed: random inputs of the benchmark shapes,
every tie point, an odd shape (K/16 not a multiple of the CTA's blocks, M not of 128), and a given global scale 16x
too large, so that most blocks saturate at 448 and take ENC 2/4's clamped path (the count of such blocks is printed
for each input). Times: CUDA-graph replay as the nvfp4 benchmark does, interleaved rounds, median; each beside the
bytes-over-copy-bandwidth bound of this GPU.

    PYTHONPATH=$PWD python3 scripts/gpu_quant_v8.py [--rounds 3]    (writes $OUT/quant_v8.json)
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
V5_CONFIGS = ((8, 4, False), (16, 2, False))  # the H100's and the H200's defaults


def v8_builds() -> list[tuple]:
    """(kernel, template args) of every instantiated build: v8 (NB, U, SPLIT, ENC) or v9 (NB, U, ENC, SWAP)."""
    out = []
    for expr in name_expressions("quant_v8"):
        kernel, params = expr.split("<", 1)
        out.append((kernel.strip(), tuple(t.strip() for t in params.rstrip(">").split(","))))
    return out


def is_diag(b) -> bool:
    """ENC 9 builds compute no codes (the access pattern's floor): timed, never validated."""
    if b[0].endswith("v11"):
        return False
    return b[1][3 if b[0].endswith("v8") else 2] == "9"


def dyn_smem(b) -> int:
    """Dynamic shared memory: v9 one 128-row tile, v10 BUFS of them."""
    kernel, a = b
    tile = 128 * int(a[0]) * 32
    return {"v8": 0, "v11": 0, "v9": tile, "v10": tile * (int(a[3]) if kernel.endswith("v10") else 1)}[
        kernel.rsplit("_", 1)[1]]


_GRID: dict = {}


def persistent_grid(func, smem: int) -> int:
    """v10's grid: as many CTAs as fit on the GPU at once (cuOccupancyMaxActiveBlocksPerMultiprocessor x SMs)."""
    if func.ptr not in _GRID:
        from cuda.bindings import driver as cu

        from workbench.runtime.launch import _ensure_smem
        _ensure_smem(func, smem)  # the occupancy query counts only the dynamic shared memory the function allows
        err, per_sm = cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(cu.CUfunction(func.ptr), 256, smem)
        assert int(err) == 0 and per_sm > 0, (err, per_sm)
        _GRID[func.ptr] = per_sm * torch.cuda.get_device_properties(0).multi_processor_count
    return _GRID[func.ptr]


def v8_name(b) -> str:
    kernel, a = b
    if kernel.endswith("v8"):
        return f"v8_nb{a[0]}u{a[1]}{'s' if a[2] == 'true' else ''}_enc{a[3]}" + ("_diag_no_encode" if is_diag(b) else "")
    if kernel.endswith("v11"):
        return f"v11_nb{a[0]}u{a[1]}"
    if kernel.endswith("v9"):
        return f"v9_nb{a[0]}u{a[1]}_enc{a[2]}{'_swap' if a[3] == 'true' else ''}" + ("_diag_no_encode" if is_diag(b) else "")
    return f"v10_nb{a[0]}u{a[1]}_enc{a[2]}_bufs{a[3]}" + ("_diag_no_encode" if is_diag(b) else "")


def quantize_v8(x, g, out: nv.NVFP4Tensor, build) -> nv.NVFP4Tensor:
    """A v8 / v9 / v10 build into `out` (swizzled, per-tensor given scale g: fp32 CUDA [])."""
    kernel, a = build
    M, K = x.shape
    nb, smem = int(a[0]), dyn_smem(build)
    func = get_kernel("quant_v8", f"{kernel}<{', '.join(a)}>")
    grid = (-(-(K // nv.BLOCK) // nb), -(-M // 128), 1)
    if kernel.endswith("v10"):
        grid = (min(grid[0] * grid[1], persistent_grid(func, smem)), 1, 1)
    launch(func, grid, 256, (x, M, K, g, 0, out.codes, out.scales, 1), shared_mem=smem)
    return out


def clamped_blocks(x, g) -> tuple[int, int]:
    """(blocks whose largest scaled value vmax * q is >= 7 or not finite: ENC 2/4's clamped path, all blocks)."""
    ref = nv.quantize_reference(x, g, "linear")
    sf = ref.scales.view(torch.float8_e4m3fn).float()
    gf = g.float().cpu() if torch.is_tensor(g) else torch.tensor(float(g))
    q = torch.where(sf != 0, 1.0 / (sf * (1.0 / gf.to(sf.device))), torch.zeros_like(sf))
    vmax = x.float().abs().view(x.shape[0], -1, nv.BLOCK).amax(-1).to(sf.device)
    hot = ~((vmax * q) < 7.0)
    return int(hot.sum()), hot.numel()


def fresh_out(M, K, g) -> nv.NVFP4Tensor:
    return nv.NVFP4Tensor(codes=torch.empty((M, K // 2), dtype=torch.uint8, device="cuda"),
                          scales=torch.zeros(nv.swizzled_size(M, K), dtype=torch.uint8, device="cuda"),
                          global_scale=g, layout="swizzled", shape=(M, K))


def check_exact(build, x, g) -> dict:
    ref = nv.quantize_reference(x, g, "linear")
    ref_sw = nv.NVFP4Tensor(ref.codes, nv.swizzle_scales(ref.scales), ref.global_scale, "swizzled", tuple(x.shape))
    return nv.compare_exact(quantize_v8(x, g, fresh_out(*x.shape, g), build), ref_sw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "/tmp/quant_v8_out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    dev = device_info()
    ceil = current_ceilings()
    print(f"device {dev['name']}, copy {ceil.copy_TBps:.3f} TB/s", flush=True)
    builds = v8_builds()
    # exactness first: the odd shape, the ties and the saturating scale, then each benchmark shape below
    validation, clamped = {}, {}
    odd = nv.make_inputs(300, 7184, seed=5)  # K / 16 = 449 blocks, M = 300 rows
    ties = nv.make_tie_inputs(256, 2048, seed=6)
    g_odd = nv.global_scale_from_amax(odd.float().abs().amax()).cuda()
    small = (("odd_300x7184", odd, g_odd), ("ties_256x2048", ties, torch.tensor(1.0, device="cuda")),
             ("saturating_300x7184", odd, g_odd * 16.0),
             ("huge_g_300x7184", (odd.float() * 1e-33).to(torch.bfloat16), torch.tensor(2.0 ** 110, device="cuda")))
    for label, x, g in small:
        clamped[label] = clamped_blocks(x, g)
        for b in builds:
            if not is_diag(b):
                validation[f"{v8_name(b)}.{label}"] = check_exact(b, x, g)["passed"]
    result = {"device": dev, "copy_TBps": ceil.copy_TBps, "recorded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "git_commit": os.environ.get("WORKBENCH_GIT_COMMIT"), "rounds": args.rounds, "cases": {}}
    for M, K in SHAPES:
        x = nv.make_inputs(M, K, seed=M + K)  # the benchmark's inputs
        g = nv.global_scale_from_amax(x.float().abs().amax()).cuda()
        clamped[f"{M}x{K}"] = clamped_blocks(x, g)
        for b in builds:
            if not is_diag(b):
                validation[f"{v8_name(b)}.{M}x{K}"] = check_exact(b, x, g)["passed"]
        ref = nv.quantize_reference(x, g, "linear")
        ref_sw = nv.NVFP4Tensor(ref.codes, nv.swizzle_scales(ref.scales), ref.global_scale, "swizzled", (M, K))
        for cfg in V5_CONFIGS:
            q = nv.quantize(x, g, "swizzled", kernel="v5", config=cfg)
            validation[f"v5_nb{cfg[0]}u{cfg[1]}.{M}x{K}"] = nv.compare_exact(q, ref_sw)["passed"]
        buf = fresh_out(M, K, g)
        fns = {f"v5_nb{cfg[0]}u{cfg[1]}": (lambda cfg=cfg, x=x, g=g, buf=buf: nv.quantize(
            x, g, "swizzled", out=buf, kernel="v5", config=cfg)) for cfg in V5_CONFIGS}
        fns.update({v8_name(b): (lambda b=b, x=x, g=g, buf=buf: quantize_v8(x, g, buf, b)) for b in builds})
        samples = {n: [] for n in fns}
        for _ in range(args.rounds):  # interleaved rounds
            for n, fn in fns.items():
                samples[n].append(time_cuda(fn, reps=20, graph=True, inner=5, l2="warm", max_seconds=2.0).median_us)
        bound = ceil.bound_us(bytes=nv.quantize_bytes(M, K))
        rows = {}
        for n, smp in samples.items():
            us = statistics.median(smp)
            rows[n] = {"median_us": round(us, 2), "rounds_us": [round(v, 2) for v in smp],
                       "pct_of_bound": round(100 * bound / us, 1),
                       "validated": None if "diag" in n else bool(validation[f"{n}.{M}x{K}"])}
        result["cases"][f"quantize_{M}x{K}"] = {"bound_us": round(bound, 2), "bytes": nv.quantize_bytes(M, K),
                                                 "variants": rows}
        print(f"\nquantize {M}x{K}: bound {bound:.2f} us", flush=True)
        for n, r in sorted(rows.items(), key=lambda kv: kv[1]["median_us"]):
            print(f"  {n:28s} {r['median_us']:8.2f} us  {r['pct_of_bound']:5.1f}% of bound  valid {r['validated']}",
                  flush=True)
    result["validation"] = validation
    result["clamped_path_blocks"] = {k: {"blocks": v[0], "of": v[1]} for k, v in clamped.items()}
    grids = {v8_name(b): _GRID.get(get_kernel("quant_v8", f"{b[0]}<{', '.join(b[1])}>").ptr)
             for b in builds if b[0].endswith("v10")}
    result["persistent_grids"] = grids
    print("\npersistent grids:", grids)
    print("\nblocks on the clamped path (vmax * q >= 7):", {k: f"{v[0]}/{v[1]}" for k, v in clamped.items()})
    bad = [k for k, v in validation.items() if not v]
    print(f"validation: {len(validation) - len(bad)} of {len(validation)} passed" + (f"; FAILED: {bad}" if bad else ""))
    (out_dir / "quant_v8.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
