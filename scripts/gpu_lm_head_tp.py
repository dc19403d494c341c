#!/usr/bin/env python3
"""The multi-GPU run of the TP LM head: validate every variant, time everything, print a table, write the record.

Usage on a multi-GPU host (NVLink multicast stays off: workbench.runtime.dist sets NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1 for this process and every rank it starts):
    PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_lm_head_tp.py [--smoke]      # spawns 1 rank/GPU
    PYTHONPATH=$PWD torchrun --nproc-per-node 4 scripts/gpu_lm_head_tp.py [--smoke]
Writes $OUT/data/results/lm_head_tp.json (or data/results/ when OUT is unset) and $OUT/lm_head_tp_topo.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.runtime import dist  # noqa: E402  (sets the multicast-off variables first)

dist.ensure_multicast_off()


def table(cases) -> str:
    lines = [f"{'case':28s} {'variant':14s} {'median_us':>10s} {'p20':>9s} {'p80':>9s} {'bound_us':>9s} {'valid':>6s}"]
    for c in cases:
        for v, t in c.variants.items():
            role = " (base)" if v == c.baseline else " (opt)" if v == c.optimized else ""
            lines.append(f"{c.name:28s} {v + role:14s} {t.median_us:10.1f} {t.p20_us:9.1f} {t.p80_us:9.1f} "
                         f"{c.bound_us:9.1f} {str(c.validation['passed']):>6s}")
        lines.append(f"{'':28s} speedup {c.baseline} -> {c.optimized}: {c.speedup:.2f}x")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument("--nprocs", type=int, default=None, help="ranks to spawn (default: every visible GPU)")
    args = ap.parse_args()

    from workbench.bench.ceilings import Ceilings
    from workbench.bench.records import make_record, validate_record
    from workbench.techniques import get, lm_head_tp

    res = lm_head_tp.benchmark_full(smoke=args.smoke, progress=True, nprocs=args.nprocs)
    if res is None:  # a non-zero torchrun rank
        return 0
    cases, extra = res
    out_dir = Path(os.environ.get("OUT", "")) if os.environ.get("OUT") else None
    results_dir = (out_dir / "data" / "results") if out_dir else None
    print("\n" + table(cases), flush=True)
    rf = extra.get("roofline")
    if rf:
        print("\nroofline of the full head on one GPU (tokens: gemm us / head us / bound us / TFLOP/s):")
        for p in rf["points"]:
            print(f"  {p['tokens']:5d}: {p['gemm_us']:9.1f} {p['head_us']:9.1f} {p['bound_us']:9.1f} {p['tflops']:7.1f}")
        print(f"  crossover: model {rf['model_crossover_tokens']} tokens, measured {rf['measured_crossover_tokens']}")
    topo = extra.get("topology", {})
    print("\n" + topo.get("summary", "no topology"))
    c = extra["ceilings"]
    ceil = Ceilings(c["device"], c["copy_TBps"], c["bf16_TFLOPs"], c["fp8_TFLOPs"])
    b = get("lm_head_tp")
    cmd = "python3 scripts/gpu_lm_head_tp.py" + (" --smoke" if args.smoke else "")
    rec = make_record("lm_head_tp", cases, b.sources, ceilings=ceil, command=cmd,
                      extra={"gpus": extra["gpus"], "topology": {k: v for k, v in topo.items() if k != "matrix"},
                             "topology_matrix": topo.get("matrix"), "roofline": rf,
                             "logits_path": extra.get("logits_path"),
                             "allgather_nblocks": extra.get("allgather_nblocks"), "smoke": args.smoke})
    try:
        validate_record(rec)
    except ImportError:
        print("jsonschema missing here: record written unvalidated (validate it on the CPU side)", flush=True)
    path = (results_dir or Path(__file__).resolve().parents[1] / "data" / "results") / "lm_head_tp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    if out_dir:
        (out_dir / "lm_head_tp_topo.txt").write_text(topo.get("matrix", "") + "\n")
    print(f"recorded {path}")
    ok = all(c.validation["passed"] for c in cases)
    print("ALL VALID" if ok else "VALIDATION FAILED in some case (see the record)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
