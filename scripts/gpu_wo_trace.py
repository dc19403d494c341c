"""Where does the graph-replay time of the fused wo GEMM go? (issue 3, sixth pass)

For the dispatcher's kernels at M = 8, 32, 64 (and cuBLAS bf16 beside them), all validated first:
1. the graph-replay time of the benchmark (wo._time: 12 calls per replay, weight sets rotated);
2. a CUPTI trace (torch.profiler) of the same replays: each kernel's own duration and the idle gap
   before it, so GEMM, wo_finalize and launch gaps are told apart;
3. (--clocks) SM clock, memory clock and power sampled by nvidia-smi while each one replays ~1.5 s.
--diag: also the v5 diagnostic builds at M = 32 and 64 (V5_DIAGNOSTICS), timed, never validated.
--sweep: also every static reduce-only v5 candidate at M = 32 and 64, and the v6 token-tile builds at M = 32; --clocks: also the clock samples.
--lean: also the lean-consumer v5 builds (V5_KERNELS_LEAN) beside their plain twins, each timed twice.
--fin: also the recorded v5 config with the in-kernel finalize (no wo_finalize kernel), validated.
Writes $OUT/trace.json. Diagnostic only: nothing here is a record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_trace.py [--sweep] [--clocks]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import capture_calls, log, wo_weight_sets  # noqa: E402


def sample_clocks(run_for_s: float, replay) -> dict:
    """Replay continuously for run_for_s seconds while nvidia-smi samples every 50 ms."""
    import torch

    q = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active"
    p = subprocess.Popen(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits", "-lms", "50"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t_end = time.time() + run_for_s
    n = 0
    while time.time() < t_end:
        replay()
        n += 1
        if n % 20 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    p.terminate()
    out, _ = p.communicate(timeout=5)
    rows = [r.split(", ") for r in out.strip().splitlines() if r.count(",") >= 4]
    rows = rows[len(rows) // 4:]  # drop the ramp
    if not rows:
        return {"samples": 0}

    def med(i):
        try:
            return statistics.median(float(r[i]) for r in rows)
        except ValueError:
            return None
    return {"samples": len(rows), "sm_MHz": med(0), "mem_MHz": med(1), "power_W": med(2), "temp_C": med(3),
            "reasons": sorted({r[4] for r in rows})}


def trace_graph(graph, reps: int = 5) -> dict:
    """Kernel durations and the idle gaps before them over `reps` replays (CUPTI via torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
        torch.cuda.synchronize()
    ev = sorted((e for e in prof.events() if e.device_type.name == "CUDA" and e.time_range.end > e.time_range.start),
                key=lambda e: e.time_range.start)
    per, gaps = {}, {}
    prev_end = None
    for e in ev:
        name = e.name.split("<")[0].split("(")[0][:40]
        per.setdefault(name, []).append(e.time_range.end - e.time_range.start)
        if prev_end is not None:
            gaps.setdefault(name, []).append(e.time_range.start - prev_end)
        prev_end = e.time_range.end
    span = (ev[-1].time_range.end - ev[0].time_range.start) if ev else 0.0
    return {"span_us": span, "kernels": {k: {"n": len(v), "median_us": statistics.median(v)} for k, v in per.items()},
            "gap_before_us": {k: statistics.median(v) for k, v in gaps.items()}}


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_trace"))
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    from workbench.nbutil import finalize_tail_us
    from workbench.runtime import device_info
    from workbench.techniques import nvfp4
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    log(f"device {device_info()}")
    K = wo.K_IN
    wq, pw, w_bf, fp8w = wo_weight_sets()
    for p_ in pw:
        v5.v5_stream(p_)
    n_nv = len(pw)
    rec = json.loads(Path("data/results/wo_gemm.json").read_text())
    best = {c["params"]["M"]: c["params"].get("v6_config") if c["params"].get("dispatch") == "fused_v6"
            else c["params"].get("v5_config") for c in rec["cases"] if c["params"]["M"] in (8, 32, 64)}
    known = {str(c): c for M in (8, 32, 64) for c in wo.v6_candidates(M) + v5.v5_candidates(M)}
    result = {"device": device_info(), "cases": {}}
    for M in (8, 32, 64):
        x = wo.make_activations(M, K, seed=300 + M)
        ref = [wo.reference(x, nvfp4.dequantize(q, torch.float32)) for q in wq[:2]]
        runs = {"cublas_bf16": lambda x=x: x @ w_bf.t()}
        names = [n for n in [best[M]] if n in known] + ([str(c) for c in v5.v5_candidates(M) if c.red and not c.grab and c.mt == 1 and str(c) != best[M]]
                             if M >= 32 and "--sweep" in sys.argv else [])
        if M == 32 and "--sweep" in sys.argv:
            names += [str(c) for c in wo.v6_candidates(M)]
        if "--lean" in sys.argv:  # the lean-consumer builds beside their plain grouped twins
            lean = [k.with_work(True) for k in v5.V5_KERNELS_LEAN if k.tokp == v5.v5_tokp_for(M)]
            twins = [k.with_work(True) for k in v5.V5_KERNELS_GROUPED + v5.V5_KERNELS
                     if any((k.tokp, k.mt, k.nwg, k.kc, k.stages, k.gs, k.nacc, k.nbuf)
                            == (c.tokp, c.mt, c.nwg, c.kc, c.stages, c.gs, c.nacc, c.nbuf) and k.grouped == c.grouped
                            for c in lean)]
            names += [str(c) for c in twins + lean if str(c) not in names]
        if ("--fin" in sys.argv and best[M] in known and known[best[M]].red and hasattr(known[best[M]], "fin")
                and not getattr(known[best[M]], "frag_ws", False)):  # (no in-kernel finalize for that layout)
            names.append(str(known[best[M]].with_fin()))
        case = {"best_recorded": best[M], "variants": {}, "rejected": {}}
        for name in names:
            cfg = known[name]
            fn = (lambda x, p, c=cfg: wo.w4a16_gemm_v6(x, p, c)) if name.startswith("v6") else (
                lambda x, p, c=cfg: v5.w4a16_gemm_v5(x, p, c))
            vs = [wo.validate(fn(x, pw[i]), ref[i]) for i in range(2)]
            if not all(v["passed"] for v in vs):
                case["rejected"][name] = [v["rel_l2"] for v in vs]
                log(f"  M={M} {name} REJECTED {[v['rel_l2'] for v in vs]}")
                continue
            runs[name] = [lambda i=i, fn=fn, x=x: fn(x, pw[i]) for i in range(n_nv)]
        if "--diag" in sys.argv:  # diagnostic builds: no output, timed without validation
            for cfg in [c for c in v5.V5_DIAGNOSTICS if c.tokp == v5.v5_tokp_for(M)]:
                runs[str(cfg)] = [lambda i=i, c=cfg, x=x: v5.w4a16_gemm_v5(x, pw[i], c) for i in range(n_nv)]
        for name, fns in runs.items():
            fns = fns if isinstance(fns, list) else [fns]
            t = wo._time(fns)
            entry = {"replay_us": t.median_us}
            # the same 12-call graph, traced and then replayed for the clock samples
            g = capture_calls(fns, 12)
            try:
                entry["trace"] = trace_graph(g)
            except Exception as e:  # noqa: BLE001 - diagnostic: report and go on
                entry["trace"] = repr(e)[:300]
            if "--clocks" in sys.argv:
                entry["clocks"] = sample_clocks(1.5, g.replay)
            tr = entry["trace"]
            tail = finalize_tail_us(tr)
            if tail is not None:
                entry["finalize_tail_us"] = tail
                log(f"M={M} {name}: finalize ends {tail:.2f} us after the GEMM")
            case["variants"][name] = entry
            kern = tr["kernels"] if isinstance(tr, dict) else tr
            log(f"M={M} {name}: replay {t.median_us:.2f} us/call; kernels {kern}; "
                f"gaps {tr.get('gap_before_us') if isinstance(tr, dict) else ''}; clocks {entry.get('clocks')}")
            del g
        if "--lean" in sys.argv:  # a second timing of each after all the first ones: run-to-run drift shows
            for name, fns in runs.items():
                fns = fns if isinstance(fns, list) else [fns]
                case["variants"][name]["replay_us_again"] = wo._time(fns).median_us
                log(f"M={M} {name}: again {case['variants'][name]['replay_us_again']:.2f} us/call")
        result["cases"][str(M)] = case
        (out_dir / "trace.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
