"""A/B timing of v5 builds that differ in one LEAN bit (issue 3): for each M, the named LEAN values of the v5
lean builds at that M, each validated against the fp32 GEMM of the dequantized weight, then timed as the record
times the fused path (graph replay per call: kernel + wo_finalize, two weights in turn, so no call finds its weight
in L2), in interleaved rounds so a clock or thermal drift hits every build alike. Prints a table with the weight-read
bound (bytes over the measured copy bandwidth) beside each time, flags builds whose wgmma ptxas serialized (their time
measures that), and writes $OUT/wo_ab.json. Diagnostic: no record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_ab.py 32:135,647 64:131,643 8:135,647
(M:lean,lean,...; work as this GPU model's tuned config at that M launches it (data/tuned/wo_gemm.json: static
shares, or a static part then grabs), else static shares at M >= 32 and 6 static units then grabs of 1 below;
LEAN c CTAS, for example 135c128: the static reduce launch on that many CTAs; --rounds R, default 3; --sets S:
the calls rotate S weights, default 2, so a build that left part of a weight in L2 shows as faster with fewer sets.)
Also prints the read-only bandwidth (a torch sum over 1 GiB) beside the copy bandwidth the bound uses. --scrub: before
every call a scrub reads 2.5x L2 of other data (evicting every line the previous calls left, hinted or not) and
rewrites x (as the kernel producing x would leave it in L2); each build's time is then reported less the scrub's own
time (timed alone the same way), so it holds no gain from anything a previous call left in L2. --baselines: also time
cuBLAS bf16 (one bf16 copy of weight 0, 235 MB) and torch fp8 per-tensor (two fp8 weights in turn) the same way, so
the ratios under either protocol come from one run. --scrub-ws: --scrub, then the build's fp32 workspace and counters
rewritten too (as if a previous call had just zeroed them), to split a cold start into its parts.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import l2_scrubber, launch_work, lean_builds, log, wo_weights  # noqa: E402


def parse(args: list[str]) -> tuple[dict[int, list[tuple[int, int]]], int, int, set[str]]:
    rounds, sets, pairs, flags = 3, 2, {}, set()
    it = iter(args)
    for a in it:
        if a in ("--scrub", "--scrub-ws", "--baselines"):
            flags |= {a[2:], "scrub"} if a.startswith("--scrub") else {a[2:]}
            continue
        if a in ("--rounds", "--sets"):
            v = int(next(it))
            if v < 1 or (a == "--sets" and v < 2):
                raise SystemExit(f"{a}: expected at least {1 if a == '--rounds' else 2}, got {v}")
            rounds, sets = (v, sets) if a == "--rounds" else (rounds, v)
            continue
        m, _, leans = a.partition(":")
        try:
            pairs[int(m)] = [tuple(int(f) for f in v.split("c")) if "c" in v else (int(v), 0) for v in leans.split(",")]
        except ValueError:
            raise SystemExit(f"argument {a!r}: expected M:LEAN[cCTAS],... (for example 32:135,135c128)") from None
        if not 1 <= int(m) <= 64:
            raise SystemExit(f"argument {a!r}: M must be 1..64 (the v5 kernel's range), got {m}")
    if not pairs:
        raise SystemExit(__doc__)
    return pairs, rounds, sets, flags


def read_TBps(nbytes: int = 2**30, reps: int = 20) -> float:
    """Read-only DRAM bandwidth: a torch sum over nbytes of bf16 (fp32 accumulation, memory-bound), median."""
    import torch

    from workbench.bench.timing import time_cuda

    buf = torch.randn(nbytes // 2, device="cuda", dtype=torch.bfloat16)
    t = time_cuda(lambda: buf.sum(), reps=reps, l2="warm")  # 1 GiB >> L2: warm is cold anyway
    return nbytes / (t.median_us * 1e-6) / 1e12


def main() -> int:
    pairs, rounds, sets, flags = parse(sys.argv[1:])
    scrub = "scrub" in flags
    import torch
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_ab"))
    out_dir.mkdir(parents=True, exist_ok=True)
    from workbench.bench.ceilings import measure_copy_TBps
    from workbench.runtime import device_info
    from workbench.runtime.kernels import compile_kernel
    from workbench.runtime.ptxas_notices import serialized_wgmma
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    log(f"device {device_info()}")
    serialized = serialized_wgmma(compile_kernel("wo_gemm_v5"))  # (cached) a serialized build times ptxas' choice
    K, N = wo.K_IN, wo.N_OUT
    pws, wref = wo_weights(sets)
    copy_tbps, read_tbps = measure_copy_TBps(), read_TBps()
    log(f"copy {copy_tbps:.3f} TB/s, read-only {read_tbps:.3f} TB/s, {sets} weights rotated")
    result = {"device": device_info(), "copy_TBps": copy_tbps, "read_TBps": round(read_tbps, 3), "sets": sets,
              "scrub": scrub, "rounds": rounds, "cases": {}}
    evict_l2 = l2_scrubber() if scrub else None
    if "baselines" in flags:
        w_bf = wref.to(torch.bfloat16)  # the dequantized weight 0: exact in bf16 (e2m1 times an e4m3 scale over g)
        fp8w = [wo.fp8_prepare_weight(wo.make_weight(N, K, seed=7 + i)) for i in range(2)]
    for M, leans in pairs.items():
        cfgs = []
        default_work, tuned = launch_work(M)
        _, s0, grab = default_work
        how = f"{s0} static units, then grabs of {grab}" if grab else "static shares"
        log(f"M={M}: {how}" + (" (this GPU model's tuned launch)" if tuned else ""))
        for lean, ctas in leans:
            work = (True, 0, 0) if ctas else default_work
            cfgs += [c.with_work(*work).with_ctas(ctas) for c in lean_builds(M, lean)]
        x = wo.make_activations(M, K, seed=400 + M)
        ref = wo.reference(x, wref)
        rewrite = [(x, x.clone())]  # (tensor, its values): what --scrub writes back after evicting everything

        def cold(rewrite=rewrite):  # --scrub: evict everything, then the inputs written as their producer would
            evict_l2()
            for t, src in rewrite:
                t.copy_(src)
        bound_us = wo.case_bytes(M, "nvfp4", N, K) / (copy_tbps * 1e12) * 1e6  # the record's bytes (weight, x, out)
        case = {"bound_us": round(bound_us, 2), "builds": {}}
        fns = {}
        for c in cfgs:
            val = wo.validate(v5.w4a16_gemm_v5(x, pws[0], c), ref)
            case["builds"][str(c)] = {"validation": val, "times_us": [], "wgmma_serialized": c.expr in serialized}
            if "scrub-ws" in flags:
                for t in v5._workspace(x.device, N, c.tokp, N // 16 + 4):
                    if all(t.data_ptr() != r.data_ptr() for r, _ in rewrite):
                        rewrite.append((t, t.clone()))
            if val["passed"]:
                fns[str(c)] = [(lambda p=p, c=c, x=x: (cold(), v5.w4a16_gemm_v5(x, p, c))) if scrub
                               else (lambda p=p, c=c, x=x: v5.w4a16_gemm_v5(x, p, c)) for p in pws]
            else:
                log(f"M={M} {c}: REJECTED {val}")
        if "baselines" in flags:
            x8, sx = wo.fp8_per_tensor(wo.pad_rows(x, 16))
            rewrite.append((x8, x8.clone()))
            base = {"cublas_bf16": [lambda x=x: x @ w_bf.t()],
                    "torch_fp8": [lambda w=w, x8=x8, sx=sx: wo.fp8_scaled_mm(x8, sx, w[0], w[1]) for w in fp8w]}
            o8, w0 = wo.fp8_scaled_mm(x8, sx, *fp8w[0]), fp8w[0]
            vals = {"cublas_bf16": wo.validate(x @ w_bf.t(), ref, 5e-3),  # cuBLAS may reduce split-k in bf16
                    "torch_fp8": wo.validate(o8[:M], ((x8.float() * sx) @ (w0[0].float() * w0[1]))[:M])}
            for name, f in base.items():
                case["builds"][name] = {"validation": vals[name], "times_us": [], "wgmma_serialized": False}
                if not vals[name]["passed"]:
                    raise SystemExit(f"M={M} {name}: failed validation {vals[name]}")
                fns[name] = [(lambda g=g: (cold(), g())) if scrub else g for g in f]
        scrub_us = []
        for _ in range(rounds):
            if scrub:
                scrub_us.append(wo._time([cold]).median_us)
            for name, f in fns.items():
                t = wo._time(f).median_us - (scrub_us[-1] if scrub else 0.0)
                case["builds"][name]["times_us"].append(round(t, 2))
        if scrub:
            case["scrub_us"] = [round(t, 2) for t in scrub_us]
            log(f"M={M:2d} scrub alone {statistics.median(scrub_us):.2f} us (subtracted round by round)")
        for name, b in case["builds"].items():
            if b["times_us"]:
                b["median_us"] = statistics.median(b["times_us"])
                log(f"M={M:2d} {name:60s} {b['median_us']:7.2f} us (rounds {b['times_us']}), "
                    f"bound {bound_us:.2f} us ({bound_us / b['median_us']:.0%} of it)"
                    + ("  [ptxas serialized its wgmma]" if b["wgmma_serialized"] else ""))
        b = case["builds"]
        if "baselines" in flags:
            for name, v in b.items():
                if v.get("median_us") and name not in ("cublas_bf16", "torch_fp8"):
                    v["vs_cublas_bf16"] = round(b["cublas_bf16"]["median_us"] / v["median_us"], 3)
                    v["vs_torch_fp8"] = round(b["torch_fp8"]["median_us"] / v["median_us"], 3)
                    log(f"M={M:2d} {name:60s} {v['vs_cublas_bf16']:.2f}x cuBLAS bf16, {v['vs_torch_fp8']:.2f}x fp8")
        result["cases"][f"M{M}"] = case
        (out_dir / "wo_ab.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
