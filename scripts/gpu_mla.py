"""One GPU session for MLA context attention: config sweep of the separate-Q/K/V kernel, then the record.

Usage on a GPU host (writes records under OUT, default data/results; the tuned config under OUT/tuned and
the raw sweep under OUT/sweep):
    OUT=/tmp/out PYTHONPATH=$PWD python3 scripts/gpu_mla.py [--knope] [--sweep-budget-s 150]

Steps, each validated before it is timed:
1. (--knope) knope_copy benchmark (T = 1k..16k) -> knope_copy.json
2. sweep at T = 8192: every config of `separate_qkv_triton.CANDIDATES` is compiled and run once, checked
   against the fp32 reference (rel-L2 <= 1e-2), its registers / spills / shared memory noted; the valid
   ones are timed in interleaved rounds (A, B, C, ..., A, B, C, ...); the five fastest and the previous
   default are timed again, interleaved, with more samples. The fastest of that second round that also
   passes a varlen batch (with an empty sequence) and the assembled-k layout becomes the config.
3. separate_qkv benchmark (T = 1k..16k) with that config pinned -> separate_qkv.json (the sweep goes
   into the record as `sweep`), and tuned/separate_qkv.json (the config, for data/tuned/).
A step that fails prints its traceback and the next one still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.bench import current_ceilings, make_record, time_variants  # noqa: E402
from workbench.bench.records import record_path, write_record  # noqa: E402

T0 = time.time()
OUT_DIR: Path | None = None


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def save(name: str, cases, sources, out: Path, extra=None):
    rec = make_record(name, cases, sources, ceilings=current_ceilings(), command="python scripts/gpu_mla.py",
                      extra=extra)
    try:
        path = write_record(rec, out)
    except ImportError:  # no jsonschema on the GPU host: validated after fetching
        path = record_path(name, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec, indent=1) + "\n")
    log("wrote", path)


def step_knope(out: Path):
    from workbench.techniques import knope_copy as K

    cases = K.benchmark(smoke=False, progress=True)
    save("knope_copy", cases, K.SOURCES, out)
    for c in cases:
        o, tc, b = c.variants["optimized"].median_us, c.variants["torch_compile"].median_us, c.bound_us
        log(f"knope {c.name}: optimized {o:.1f} us = {o / b:.3f}x bound, torch.compile {tc:.1f} us "
            f"= {tc / b:.3f}x, eager_cat {c.variants['eager_cat'].median_us:.1f} us; valid {c.validation['passed']}")


def _timing_row(tm, flops):
    return {"median_us": round(tm.median_us, 1), "p20_us": round(tm.p20_us, 1), "p80_us": round(tm.p80_us, 1),
            "n": tm.n, "TFLOPs": round(flops / tm.median_us / 1e6, 1)}


def step_sweep(budget_s: float, t: int = 8192, varlen=(1000, 100, 2047, 0, 949), dims=None,
               device="cuda") -> dict:
    """Validate and time every candidate at T = t; returns the sweep summary (rows, rounds, best)."""
    from workbench.model import R1
    from workbench.techniques import separate_qkv as S
    from workbench.techniques import separate_qkv_triton as tk

    dims = dims or R1
    x = S.make_inputs(t, dims, seed=5, device=device)
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], scale=dims.softmax_scale)
    flops = S.causal_flops(t, dims)
    out_shape = (t, dims.num_heads, dims.v_head_dim)
    rows, fns = {}, {}
    for c in tk.CANDIDATES:
        name = tk.config_name(c)
        if time.time() - T0 > budget_s:
            rows[name] = {"config": c, "skipped": "sweep time budget"}
            log("sweep: out of time budget, skipping", name)
            continue
        try:
            out = torch.full(out_shape, float("nan"), dtype=torch.bfloat16, device=device)
            t1 = time.time()
            S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], out=out, config=c, scale=dims.softmax_scale)
            torch.cuda.synchronize()
            first_s = time.time() - t1
            v = S.validate(out, ref)
            ck = tk.last_compiled
            row = {"config": c, "rel_l2": round(v["rel_l2"], 6), "passed": v["passed"],
                   "regs": getattr(ck, "n_regs", None), "spills": getattr(ck, "n_spills", None),
                   "smem": getattr(getattr(ck, "metadata", None), "shared", None), "compile_and_first_s": round(first_s, 2)}
            if v["passed"]:
                fns[name] = lambda c=c, x=x: S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], config=c,
                                                         scale=dims.softmax_scale)
            del out
        except Exception as e:
            row = {"config": c, "error": repr(e)[:300], "passed": False}
        rows[name] = row
        log("sweep check", name, {k: v for k, v in row.items() if k != "config"})
    log(f"sweep: {len(fns)} of {len(tk.CANDIDATES)} configs valid; timing round 1 (interleaved)")
    r1 = time_variants(fns, rounds=3, reps=24, l2="warm", warmup=1)
    for name, tm in r1.items():
        rows[name]["round1"] = _timing_row(tm, flops)
    ranked = sorted(r1, key=lambda n: r1[n].median_us)
    if OUT_DIR is not None:  # partial results survive a later failure
        (OUT_DIR / "sweep").mkdir(exist_ok=True)
        (OUT_DIR / "sweep" / "separate_qkv_round1.json").write_text(json.dumps(rows, indent=1) + "\n")
    for name in ranked:
        log(f"  round1 {name:36s} {r1[name]}  {flops / r1[name].median_us / 1e6:6.1f} TFLOP/s")
    prev = tk.config_name(tk.PREVIOUS_DEFAULT)
    finalists = ranked[:5] + ([prev] if prev in fns and prev not in ranked[:5] else [])
    log("sweep: round 2 (interleaved, more samples):", finalists)
    r2 = time_variants({n: fns[n] for n in finalists}, rounds=6, reps=60, l2="warm", warmup=1)
    for name, tm in r2.items():
        rows[name]["round2"] = _timing_row(tm, flops)
        log(f"  round2 {name:36s} {tm}  {flops / tm.median_us / 1e6:6.1f} TFLOP/s")
    del x, ref, fns
    torch.cuda.empty_cache()

    # The winner must also handle varlen batches and the assembled layout (per-head k_pe, k stride 192).
    order = sorted(r2, key=lambda n: r2[n].median_us)
    tv = sum(varlen)
    xv = S.make_inputs(tv, dims, seed=11, device=device)
    cu = S.cu_seqlens_for(varlen, device=device)
    ref_v = S.reference(xv["q"], xv["k_nope"], xv["k_pe"], xv["v"], cu_seqlens=cu, scale=dims.softmax_scale)
    dn = dims.qk_nope_dim
    k_asm = torch.cat([xv["k_nope"], xv["k_pe"][:, None].expand(-1, dims.num_heads, -1)], dim=-1)
    ref_a = S.reference(xv["q"], xv["k_nope"], xv["k_pe"], xv["v"], scale=dims.softmax_scale)
    best, checks = None, {}
    for name in order:
        c = rows[name]["config"]
        try:
            out = torch.full((tv, dims.num_heads, dims.v_head_dim), float("nan"), dtype=torch.bfloat16,
                             device=device)
            S.attention(xv["q"], xv["k_nope"], xv["k_pe"], xv["v"], cu_seqlens=cu, out=out, config=c,
                        scale=dims.softmax_scale)
            vv = S.validate(out, ref_v)
            out_a = S.attention(xv["q"], k_asm[..., :dn], k_asm[..., dn:], xv["v"], config=c,
                                scale=dims.softmax_scale)
            va = S.validate(out_a, ref_a)
            checks[name] = {"varlen_rel_l2": round(vv["rel_l2"], 6), "assembled_rel_l2": round(va["rel_l2"], 6),
                            "passed": vv["passed"] and va["passed"]}
        except Exception as e:
            checks[name] = {"error": repr(e)[:300], "passed": False}
        log("sweep: varlen + assembled check", name, checks[name])
        if checks[name]["passed"]:
            best = name
            break
    del xv, ref_v, ref_a, k_asm
    torch.cuda.empty_cache()
    return {"case": f"T{t}", "device": torch.cuda.get_device_name(), "flops": flops,
            "timing": "round1: all valid configs, 3 interleaved rounds x 8 samples; round2: finalists, "
                      "6 interleaved rounds x 10 samples; CUDA events, warm L2",
            "rows": [{"name": n, **r} for n, r in rows.items()], "finalist_checks": checks,
            "best": best, "best_config": rows[best]["config"] if best else None, "previous_default": prev}


def step_attention(out: Path, sweep: dict | None):
    from workbench.techniques import separate_qkv as S
    from workbench.techniques import separate_qkv_triton as tk

    if sweep and sweep.get("best_config"):
        tk.pin_config(sweep["best_config"])
        tuned = {"config": sweep["best_config"], "name": sweep["best"], "device": sweep["device"],
                 "measured": "scripts/gpu_mla.py sweep at T=8192 (data/results/separate_qkv.json: sweep)"}
        (out / "tuned").mkdir(parents=True, exist_ok=True)
        (out / "tuned" / "separate_qkv.json").write_text(json.dumps(tuned, indent=1) + "\n")
    log("benchmark config:", tk.config_name(tk.tuned_config()))
    cases = S.benchmark(smoke=False, progress=True)
    save("separate_qkv", cases, S.SOURCES, out, extra={"sweep": sweep} if sweep else None)
    for c in cases:
        f = c.params["flops"]
        rate = {k: round(f / v.median_us / 1e6, 1) for k, v in c.variants.items() if k != "assembly_only"}
        log(f"attn {c.name}: TFLOP/s {rate}; valid {c.validation}; config {c.params['triton_config_name']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--knope", action="store_true", help="also re-record knope_copy")
    ap.add_argument("--skip-sweep", action="store_true", help="benchmark the tuned config as it is")
    ap.add_argument("--sweep-budget-s", type=float, default=150.0,
                    help="stop compiling new candidates this many seconds after start")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", ROOT / "data" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    global OUT_DIR
    OUT_DIR = out
    log(torch.cuda.get_device_name(), "torch", torch.__version__)
    import triton

    log("triton", triton.__version__)
    log("ceilings", current_ceilings())
    if args.knope:
        try:
            log("== step knope")
            step_knope(out)
        except Exception:
            log("step knope FAILED")
            traceback.print_exc()
    sweep = None
    if not args.skip_sweep:
        try:
            log("== step sweep")
            sweep = step_sweep(args.sweep_budget_s)
            (out / "sweep").mkdir(exist_ok=True)
            (out / "sweep" / "separate_qkv.json").write_text(json.dumps(sweep, indent=1) + "\n")
            log("sweep best:", sweep["best"])
        except Exception:
            log("step sweep FAILED")
            traceback.print_exc()
            sys.stdout.flush()
    try:
        log("== step attention")
        step_attention(out, sweep)
    except Exception:
        log("step attention FAILED")
        traceback.print_exc()
    log("done")


if __name__ == "__main__":
    main()
