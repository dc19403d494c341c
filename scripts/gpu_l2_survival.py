"""Does a weight survive in L2 from one wo call to the next time it is used? (issue 3, thirteenth pass)

The record times each fused build over weights used in turn (each ~66 MB, L2 ~50 MB), assuming the other weights'
streams evict it. A build whose copies carry an L2 cache policy changes which lines L2 evicts, so the assumption needs
a measurement (written for the thirteenth pass's evict_first builds, commit 8a66b42, since reverted; it runs any
build of V5_KERNELS_LEAN). For each named v5 build at M: calls on weights 0, 1, ..., S-1 in turn (S sets),
then a plain torch read (an fp32 sum of its bytes, normal policy) of one weight's stream, timed with CUDA events: weight 0 (the next one
the rotation would use), weight S-1 (the one just used) and an untouched buffer of the same size (the DRAM time).
A read of weight 0 faster than the untouched one means part of it was still in L2 when its next call would start.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_l2_survival.py 32:647,2695 --sets 3
Writes $OUT/l2_survival.json. Diagnostic: no record.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import launch_work, lean_builds, log, wo_weights  # noqa: E402


def main() -> int:
    args = sys.argv[1:]
    sets, trials = 3, 15
    if "--sets" in args:
        i = args.index("--sets")
        sets = int(args[i + 1])
        del args[i:i + 2]
    if not args or sets < 2:
        raise SystemExit(__doc__)
    import torch

    from workbench.runtime import device_info
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_l2_survival"))
    out_dir.mkdir(parents=True, exist_ok=True)
    pws, wref = wo_weights(sets)
    result = {"device": device_info(), "sets": sets, "trials": trials, "cases": {}}

    def read_us(t: torch.Tensor) -> float:  # one read, right after the rotation (time_cuda's warm-up would re-read)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        t.sum()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) * 1e3

    for spec in args:
        m, _, leans = spec.partition(":")
        M = int(m)
        x = wo.make_activations(M, wo.K_IN, seed=400 + M)
        ref = wo.reference(x, wref)
        for lean in (int(v) for v in leans.split(",")):
            c = lean_builds(M, lean)[0].with_work(*launch_work(M)[0])
            val = wo.validate(v5.w4a16_gemm_v5(x, pws[0], c), ref)
            if not val["passed"]:
                log(f"M={M} {c}: REJECTED {val}")
                continue
            for p in pws:  # every stream built before the trials
                v5.w4a16_gemm_v5(x, p, c)
            streams = [p.data_v5[c.stream_args()].view(torch.float32) for p in pws]  # a float sum runs at DRAM speed
            untouched = torch.randn_like(streams[0])
            times = {"next (weight 0)": [], "just used (weight S-1)": [], "untouched": []}
            for _ in range(trials):
                for key, t in (("next (weight 0)", streams[0]), ("just used (weight S-1)", streams[-1]),
                               ("untouched", untouched)):
                    for p in pws:
                        v5.w4a16_gemm_v5(x, p, c)
                    times[key].append(read_us(t))
            med = {k: round(statistics.median(v), 2) for k, v in times.items()}
            result["cases"][f"M{M}_lean{lean}"] = {"config": str(c), "validation": val, "read_us": med,
                                                    "stream_MB": round(streams[0].numel() * 4 / 1e6, 1)}
            log(f"M={M} lean {lean:5d}: read of " + ", ".join(f"{k} {v:.2f} us" for k, v in med.items()))
            (out_dir / "l2_survival.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
