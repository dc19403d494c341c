"""Where does a v9p CTA spend its time? (issue 3, twenty-third pass)

Launches the v9p timeline builds (`V9P_TIMELINES`: clock64 stamps per CTA and stage in the module's v9_prof table;
the math is the build's own) at M tokens and summarizes, per build, medians over CTAs in SM cycles:
- ramp: the CTA's start -> stage 0 full;
- per stage: when the stage's group leader asked for it, when it was full, when its chunks were done, and when the
  producer had issued its copies (all from the CTA's start);
- wait: full - ask (> 0: the consumer waited for bytes), busy: done - full (the leader's chunk of the stage);
- tail: the last stage full -> all chunks done -> partials in shared memory -> stores done;
- span: start -> end, and the kernel's span over all CTAs from globaltimer.
Each build runs with both producer orders (x_first: each stage's x copies before its weight copies, or after the
first stages' weight copies as with PDL). Each full build is validated against the fp32 reference first (outputs
poisoned with NaN); the stream-only twins write no output. The full builds' unstamped counterparts are also timed as
the benchmark times them (graph replay of 12 calls, two weights in turn) in both orders and with PDL, beside the
recorded dispatcher (`wo_nvfp4`), v5's tuned build and cuBLAS bf16.
Writes $OUT/wo_v9_timeline.json (summaries and one raw stamp table per build and order). Diagnostic only.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_v9_timeline.py [--m 1] [--samples 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
from pathlib import Path

import torch
from gpu_wo_v9 import v9_setup  # scripts/ (this script's folder) is on sys.path

from workbench.bench.timing import time_variants
from workbench.runtime.kernels import load_module
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo
from workbench.techniques import wo_gemm_v9 as v9

SLOTS = 256  # V9_PROF_SLOTS in kernels/wo_gemm_v9.cu
TABLE_CTAS = 160  # the rows of v9_prof: the PROF builds stamp blockIdx.x's row, so the grid must not exceed it


def prof_table():
    """The v9_prof table of the loaded wo_gemm_v9 module, as a CuPy uint64 [TABLE_CTAS, SLOTS] view."""
    import cupy

    mod = load_module("wo_gemm_v9")
    ptr = mod._module.get_global_var("v9_prof")  # a device address
    mem = cupy.cuda.UnownedMemory(ptr, TABLE_CTAS * SLOTS * 8, mod, torch.cuda.current_device())
    return cupy.ndarray((TABLE_CTAS, SLOTS), dtype=cupy.uint64, memptr=cupy.cuda.MemoryPointer(mem, 0))


def med(vals):
    vals = [float(v) for v in vals]
    return round(statistics.median(vals), 1) if vals else None


def summarize(tab, grid: int, n_st: int, warps: int, full_build: bool) -> dict:
    """tab: uint64 numpy [TABLE_CTAS, SLOTS] stamps of one launch -> medians over CTAs (SM cycles from the CTA's start)."""
    rows = [list(map(int, tab[b])) for b in range(grid)]
    st_rows = []
    for st in range(min(n_st, 32)):
        ask = [r[40 + st] - r[1] for r in rows if r[40 + st]]
        full = [r[72 + st] - r[1] for r in rows if r[72 + st]]
        done = [r[104 + st] - r[1] for r in rows if r[104 + st]]
        issue = [r[8 + st] - r[1] for r in rows if r[8 + st]]
        wait = [r[72 + st] - r[40 + st] for r in rows if r[72 + st] and r[40 + st]]
        busy = [r[104 + st] - r[72 + st] for r in rows if r[104 + st] and r[72 + st]]
        lat = [r[72 + st] - r[8 + st] for r in rows if r[72 + st] and r[8 + st]]
        st_rows.append({"stage": st, "ask": med(ask), "full": med(full), "done": med(done), "issued": med(issue),
                        "wait": med(wait), "busy": med(busy), "issued_to_full": med(lat)})
    last = min(n_st, 32) - 1
    loop_end = [max(r[136 + w] for w in range(warps)) - r[1] for r in rows]
    out = {"ramp": med([r[72] - r[1] for r in rows]), "barrier": med([r[2] - r[1] for r in rows]),
           "last_full": med([r[72 + last] - r[1] for r in rows]), "loop_end": med(loop_end),
           "loop_end_max": max(loop_end), "stages": st_rows}
    if full_build:
        out["all_done"] = med([r[5] - r[1] for r in rows])
        out["partials"] = med([r[6] - r[5] for r in rows])
        out["stores"] = med([r[4] - r[6] for r in rows])
        out["span"] = med([r[4] - r[1] for r in rows])
        out["span_max"] = max(r[4] - r[1] for r in rows)
        rates = [(r[4] - r[1]) / (r[3] - r[0]) for r in rows if r[3] > r[0]]
        out["ghz"] = round(statistics.median(rates), 3) if rates else None
        out["kernel_ns"] = max(r[3] for r in rows) - min(r[0] for r in rows)
        out["start_spread_ns"] = max(r[0] for r in rows) - min(r[0] for r in rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--samples", type=int, default=5, help="launches stamped (each the last of 12 back to back)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap", action="store_true", help="zero the table right before the stamped launch")
    ap.add_argument("--only", default="", help="the timeline builds whose names contain one of these (comma-separated)")
    ap.add_argument("--x-first-only", action="store_true", help="only the x-first order (ordinary launches' default)")
    args = ap.parse_args()
    M, N, K = args.m, wo.N_OUT, wo.K_IN
    dev, ceil, wq, pw, grid = v9_setup(v9_streams=False)
    if grid > TABLE_CTAS:
        raise SystemExit(f"grid: the timeline table holds {TABLE_CTAS} CTAs, this GPU launches {grid}; enlarge v9_prof "
                         "in kernels/wo_gemm_v9.cu and TABLE_CTAS here")
    x = wo.make_activations(M, K, seed=100 + M)
    ref = wo.reference(x, nv.dequantize(wq[0], torch.float32))
    table = prof_table()
    result: dict = {"device": dev, "M": M, "grid": grid, "commit": os.environ.get("WORKBENCH_GIT_COMMIT"),
                    "builds": {}, "times": {}}
    fns: dict = {}
    timelines = [c for c in v9.V9P_TIMELINES if not args.only or any(o in str(c) for o in args.only.split(","))]
    for cfg, xf in [(c, xf) for c in timelines for xf in ((True,) if args.x_first_only else (True, False))]:
        name = f"{cfg}_{'xfirst' if xf else 'xlast'}"
        plain = dataclasses.replace(cfg, prof=False)
        if cfg.diag == 0:
            for c, pdl in ((cfg, False), (plain, False), (plain, True)):
                o = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
                r = wo.validate(v9.w4a16_gemm_v9p(x, pw[0], c, out=o, enable_pdl=pdl, x_first=xf), ref)
                print(f"  {c} x_first={xf} pdl={pdl}: rel-L2 {r['rel_l2']:.2e} {'ok' if r['passed'] else 'FAILED'}",
                      flush=True)
                if not r["passed"]:
                    raise SystemExit(f"{c} failed validation; no timeline")
            fns[f"{plain}_{'xfirst' if xf else 'xlast'}"] = [
                lambda i=i, c=plain, xf=xf: v9.w4a16_gemm_v9p(x, pw[i], c, x_first=xf) for i in range(2)]
            if not xf:
                fns[f"{plain}_pdl"] = [lambda i=i, c=plain: v9.w4a16_gemm_v9p(x, pw[i], c, enable_pdl=True)
                                       for i in range(2)]
            fns[f"{cfg}_{'xfirst' if xf else 'xlast'}"] = [
                lambda i=i, c=cfg, xf=xf: v9.w4a16_gemm_v9p(x, pw[i], c, x_first=xf) for i in range(2)]
        elif cfg.diag in (2, 3) and xf:  # the decode-only and mma-only twins (a meaningless output), stamped and not
            for c in (cfg, plain):
                fns[str(c)] = [lambda i=i, c=c: v9.w4a16_gemm_v9p(x, pw[i], c) for i in range(2)]
        samples = []
        for _ in range(args.samples):
            # --gap: the table is zeroed just before the stamped launch (a fill kernel between it and the previous
            # launch); default: zeroed before all 12, so the stamped launch follows the previous one directly, as
            # in the timed graphs (each launch writes the same slots; the last one's stay)
            if not args.gap:
                table.fill(0)
            for i in range(11):
                v9.w4a16_gemm_v9p(x, pw[i % 2], cfg, x_first=xf)
            if args.gap:
                table.fill(0)
            v9.w4a16_gemm_v9p(x, pw[1], cfg, x_first=xf)
            torch.cuda.synchronize()
            raw = table.get()
            samples.append(summarize(raw, grid, (K // 128 + cfg.ch - 1) // cfg.ch, cfg.warps, cfg.diag in (0, 2, 3)))
        result["builds"][name] = samples
        result.setdefault("raw", {})[name] = raw[:grid].astype("int64").tolist()
        s = samples[len(samples) // 2]
        head = (f"{name}: ramp {s['ramp']}, last stage full {s['last_full']}, loop end {s['loop_end']} "
                f"(max {s['loop_end_max']})")
        if cfg.diag in (0, 2, 3):
            head += (f", all done {s['all_done']}, partials {s['partials']}, stores {s['stores']}, span {s['span']} "
                     f"(max {s['span_max']}) cycles at {s['ghz']} GHz; kernel {s['kernel_ns'] / 1e3:.2f} us, "
                     f"CTA starts spread {s['start_spread_ns']} ns")
        print(head, flush=True)
        print(f"    {'st':>3s} {'issued':>7s} {'ask':>7s} {'full':>7s} {'done':>7s} {'wait':>6s} {'busy':>6s} {'iss->full':>9s}")
        for r in s["stages"]:
            print(f"    {r['stage']:3d} {r['issued'] or 0:7.0f} {r['ask'] or 0:7.0f} {r['full'] or 0:7.0f} "
                  f"{r['done'] or 0:7.0f} {r['wait'] or 0:6.0f} {r['busy'] or 0:6.0f} {r['issued_to_full'] or 0:9.0f}")
    o = wo.wo_nvfp4(x, pw[0])
    if not wo.validate(o, ref)["passed"]:
        raise SystemExit("wo_nvfp4 failed validation")
    fns["recorded"] = [lambda i=i: wo.wo_nvfp4(x, pw[i]) for i in range(2)]
    v5_cfg = wo.device_tuning().get(8)  # the tuning table's M = 8 build (v5 on the H200), which serves M <= 8
    if v5_cfg is not None and M <= 8:
        o = wo.wo_nvfp4(x, pw[0], tuning={M: v5_cfg})
        if not wo.validate(o, ref)["passed"]:
            raise SystemExit(f"{v5_cfg} failed validation")
        fns[f"m8_tuned_{v5_cfg}"] = [lambda i=i: wo.wo_nvfp4(x, pw[i], tuning={M: v5_cfg}) for i in range(2)]
    w_bf = nv.dequantize(wq[0], torch.bfloat16)
    fns["cublas_bf16"] = lambda: x @ w_bf.t()
    t = time_variants(fns, rounds=args.rounds, reps=10 * args.rounds, graph=True, inner=12, max_seconds=4.0)
    bound = ceil.bound_us(bytes=wo.case_bytes(M, "nvfp4", N, K), flops=wo.flops(M, N, K))
    print(f"M={M}: weight-read bound {bound:.2f} us", flush=True)
    for name, tm in t.items():
        result["times"][name] = {"median_us": round(tm.median_us, 3), "p20_us": round(tm.p20_us, 3),
                                 "p80_us": round(tm.p80_us, 3)}
        ratio = t["cublas_bf16"].median_us / tm.median_us
        print(f"  {name:44s} {tm.median_us:8.2f} us  {100 * bound / tm.median_us:5.1f}% of bound  {ratio:5.2f}x bf16",
              flush=True)
    result["bound_us"] = round(bound, 3)
    dst = Path(os.environ.get("OUT", ".")) / "wo_v9_timeline.json"
    dst.write_text(json.dumps(result, indent=1))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
