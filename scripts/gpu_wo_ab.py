"""A/B timing of v5 builds that differ in one LEAN bit (issue 3): for each M, the named LEAN values of the v5
lean builds at that M, each validated against the fp32 GEMM of the dequantized weight, then timed as the record
times the fused path (graph replay per call: kernel + wo_finalize, two weights in turn, so no call finds its weight
in L2), in interleaved rounds so a clock or thermal drift hits every build alike. Prints a table with the weight-read
bound (bytes over the measured copy bandwidth) beside each time, flags builds whose wgmma ptxas serialized (their time
measures that), and writes $OUT/wo_ab.json. Diagnostic: no record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_ab.py 32:135,647 64:131,643 8:135,647
(M:lean,lean,...; work as the dispatcher launches each M: static shares at M >= 32, 6 static units then grabs of 1
below; LEAN c CTAS, for example 135c128: the static reduce launch on that many CTAs; --rounds R, default 3.)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import log, two_wo_weights  # noqa: E402


def parse(args: list[str]) -> tuple[dict[int, list[tuple[int, int]]], int]:
    rounds, pairs = 3, {}
    it = iter(args)
    for a in it:
        if a == "--rounds":
            rounds = int(next(it))
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
    return pairs, rounds


def main() -> int:
    pairs, rounds = parse(sys.argv[1:])
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
    pws, wref = two_wo_weights()
    copy_tbps = measure_copy_TBps()
    result = {"device": device_info(), "copy_TBps": copy_tbps, "rounds": rounds, "cases": {}}
    for M, leans in pairs.items():
        cfgs = []
        for lean, ctas in leans:
            work = (True, 0, 0) if M >= 32 or ctas else (True, 6, 1)
            found = [c for c in v5.V5_KERNELS_LEAN if c.tokp >= M and c.lean == lean and c.tokp == min(
                k.tokp for k in v5.V5_KERNELS_LEAN if k.tokp >= M and k.lean == lean)]
            if not found:
                raise SystemExit(f"M={M}: no v5 lean build with LEAN {lean} (V5_KERNELS_LEAN)")
            cfgs += [c.with_work(*work).with_ctas(ctas) for c in found]
        x = wo.make_activations(M, K, seed=400 + M)
        ref = wo.reference(x, wref)
        bound_us = wo.case_bytes(M, "nvfp4", N, K) / (copy_tbps * 1e12) * 1e6  # the record's bytes (weight, x, out)
        case = {"bound_us": round(bound_us, 2), "builds": {}}
        fns = {}
        for c in cfgs:
            val = wo.validate(v5.w4a16_gemm_v5(x, pws[0], c), ref)
            case["builds"][str(c)] = {"validation": val, "times_us": [], "wgmma_serialized": c.expr in serialized}
            if val["passed"]:
                fns[str(c)] = [lambda p=p, c=c, x=x: v5.w4a16_gemm_v5(x, p, c) for p in pws]
            else:
                log(f"M={M} {c}: REJECTED {val}")
        for _ in range(rounds):
            for name, f in fns.items():
                case["builds"][name]["times_us"].append(round(wo._time(f).median_us, 2))
        for name, b in case["builds"].items():
            if b["times_us"]:
                b["median_us"] = statistics.median(b["times_us"])
                log(f"M={M:2d} {name:60s} {b['median_us']:7.2f} us (rounds {b['times_us']}), "
                    f"bound {bound_us:.2f} us ({bound_us / b['median_us']:.0%} of it)"
                    + ("  [ptxas serialized its wgmma]" if b["wgmma_serialized"] else ""))
        result["cases"][f"M{M}"] = case
        (out_dir / "wo_ab.json").write_text(json.dumps(result, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
