"""One GPU session for MLA context attention: k assembly (knope_copy) and separate-Q/K/V attention.

Usage on a GPU host (writes records and a log under OUT, default data/results):
    OUT=/tmp/out PYTHONPATH=$PWD python3 scripts/gpu_mla.py [--skip-knope] [--skip-sweep] [--skip-attn]

Steps, each validated before it is timed:
1. knope_copy benchmark (T = 1k..16k) -> knope_copy.json
2. attention kernel checks: varlen batch and pinned tile configs against the fp32 reference, a sweep of
   the tile configs at T = 8192 (time, TFLOP/s, registers, spills)
3. separate_qkv benchmark (T = 1k..16k) -> separate_qkv.json
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

from workbench.bench import current_ceilings, make_record, time_cuda  # noqa: E402
from workbench.bench.records import record_path, write_record  # noqa: E402

T0 = time.time()


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


def step_checks_and_sweep(out: Path, sweep: bool):
    from workbench.techniques import separate_qkv as S
    from workbench.techniques import separate_qkv_triton as tk

    # varlen batch (with an empty sequence), autotuned config
    x = S.make_inputs(4096, seed=11)
    cu = S.cu_seqlens_for([1000, 100, 2047, 0, 949], device="cuda")
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], cu_seqlens=cu)
    got = S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], cu_seqlens=cu)
    log("varlen autotuned", S.validate(got, ref), "config", tk.best_config(2047))
    for cfg in tk.CONFIGS:
        c = {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
        try:
            got = S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], cu_seqlens=cu, config=c)
            log("varlen", c, S.validate(got, ref))
        except Exception as e:
            log("varlen", c, "FAILED", repr(e)[:300])
    del x, ref, got
    if not sweep:
        return
    t = 8192
    x = S.make_inputs(t, seed=5)
    ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"])
    flops = S.causal_flops(t)
    rows = []
    extra = [dict(BLOCK_M=128, BLOCK_N=16, num_warps=8, num_stages=3),
             dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=3)]
    for c in [{**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages} for cfg in tk.CONFIGS] + extra:
        if time.time() - T0 > 150:
            log("sweep: out of time budget, skipping", c)
            continue
        try:
            got = S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], config=c)
            torch.cuda.synchronize()
            v = S.validate(got, ref)
            ck = tk.last_compiled
            tm = time_cuda(lambda c=c: S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], config=c), reps=8,
                           l2="warm", warmup=2)
            row = {**c, "median_us": round(tm.median_us, 1), "TFLOPs": round(flops / tm.median_us / 1e6, 1),
                   "rel_l2": round(v["rel_l2"], 5), "regs": getattr(ck, "n_regs", None),
                   "spills": getattr(ck, "n_spills", None), "smem": getattr(ck, "metadata", None) and
                   getattr(ck.metadata, "shared", None)}
        except Exception as e:
            row = {**c, "error": repr(e)[:300]}
        rows.append(row)
        log("sweep T=8192", row)
    (out / "separate_qkv_sweep.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows},
                                                            indent=1))


def step_attention(out: Path):
    from workbench.techniques import separate_qkv as S

    cases = S.benchmark(smoke=False, progress=True)
    save("separate_qkv", cases, S.SOURCES, out)
    for c in cases:
        f = c.params["flops"]
        rate = {k: round(f / v.median_us / 1e6, 1) for k, v in c.variants.items() if k != "assembly_only"}
        log(f"attn {c.name}: TFLOP/s {rate}; valid {c.validation}; config {c.params['triton_config']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-knope", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-attn", action="store_true")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", ROOT / "data" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    log(torch.cuda.get_device_name(), "torch", torch.__version__)
    try:
        import triton

        log("triton", triton.__version__)
    except Exception as e:
        log("no triton", e)
    log("ceilings", current_ceilings())
    steps = []
    if not args.skip_knope:
        steps.append(("knope", lambda: step_knope(out)))
    steps.append(("checks", lambda: step_checks_and_sweep(out, not args.skip_sweep)))
    if not args.skip_attn:
        steps.append(("attention", lambda: step_attention(out)))
    for name, fn in steps:
        try:
            log("== step", name)
            fn()
        except Exception:
            log("step", name, "FAILED")
            traceback.print_exc()
            sys.stdout.flush()
    log("done")


if __name__ == "__main__":
    main()
