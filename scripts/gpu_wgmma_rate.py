"""How many SM cycles one wgmma.m64nNk16 (bf16, fp32 accumulate) occupies on this card, A from registers
(RS, as v5 feeds the decoded weight) or from shared memory (SS), N = 8 .. 256, 1, 2 or 4 warpgroups per SM
issuing (kernels/wgmma_rate.cu; issue 3, eighth pass), committed in groups of 4 (or 2, as v5 at M = 32), A constant
or rewritten before each group (as v5's decoded weight), or decoded before each group from a code word with v5's
rotate decode (the consumer's work without the stream; tenth pass), or that decode into registers no wgmma reads, or
with more groups in flight; then the v5-shaped loops beside a copy-engine stream into the same shared memory
(wgmma_rate_stream, "with_stream" in the JSON). Cycles come from clock64 around each CTA's loop
(median over the SMs); "% of peak" is the FMA work, 64 N 16 per instruction, over 2048 bf16 FMA per SM and
cycle (the dense peak). Writes $OUT/wgmma_rate.json. Diagnostic: nothing here is a record.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wgmma_rate.py
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from pathlib import Path


def main() -> int:
    import torch

    from workbench.runtime import device_info, get_kernel, launch
    from workbench.runtime.kernels import name_expressions

    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wgmma_rate"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    iters = 4000
    rows = []
    for expr in (e for e in name_expressions("wgmma_rate") if e.startswith("wgmma_rate<")):
        n, rs, nwg, gs, aw, ldsf, dec, nb = re.match(
            r"wgmma_rate<(\d+), (true|false), (\d+)(?:, (\d+), (true|false)(?:, (true|false)(?:, (\d)(?:, (\d))?)?)?)?>",
            expr).groups()
        n, nwg, gs, dec, nb = int(n), int(nwg), int(gs or 4), int(dec or 0), int(nb or 2)
        fn = get_kernel("wgmma_rate", expr)
        out = torch.empty(sms * nwg * 128, dtype=torch.float32, device="cuda")
        cyc = torch.zeros(sms, dtype=torch.int64, device="cuda")
        for _ in range(2):  # the first launch warms up
            launch(fn, sms, nwg * 128, (out, cyc, iters))
        torch.cuda.synchronize()
        assert torch.all(out == 0), expr  # zeros in, zeros out: the loop ran on the operands it was given
        per = statistics.median(cyc.tolist()) / (nwg * iters * gs)
        rows.append({"N": n, "A": "registers" if rs == "true" else "shared", "warpgroups": nwg, "group": gs,
                     "a_rewritten": aw == "true", "lds_before_fence": ldsf == "true", "decode": dec == 1,
                     "decode_unused": dec == 2, "decode_int_only": dec == 3, "decode_hmul2_only": dec == 4, "groups_in_flight": nb - 1,
                     "cycles_per_wgmma_per_sm": round(per, 1),
                     "pct_of_peak": round(100 * 64 * n * 16 / per / 2048, 1)})
        print(f"N={n:3d} A={rows[-1]['A']:9s} warpgroups={nwg} group={gs} A rewritten={aw == 'true'} "
              f"LDS before fence={ldsf == 'true'} decode={dec} in flight={nb - 1}: {per:6.1f} SM cycles per wgmma "
              f"({rows[-1]['pct_of_peak']:5.1f}% of the bf16 peak)", flush=True)
    # the same loops beside a copy-engine stream into the same shared memory (wgmma_rate_stream): 256 MB of zeros,
    # more than L2 holds, in v5's M = 32 weight stages
    src = torch.zeros(256 << 20, dtype=torch.uint8, device="cuda")
    stream_rows = []
    for expr in (e for e in name_expressions("wgmma_rate") if e.startswith("wgmma_rate_stream<")):
        n, nwg, dec, bring = re.match(r"wgmma_rate_stream<(\d+), (\d+), (\d), (true|false)>", expr).groups()
        n, nwg, dec = int(n), int(nwg), int(dec)
        fn = get_kernel("wgmma_rate", expr)
        out = torch.full((sms * nwg * 128,), float("nan"), dtype=torch.float32, device="cuda")
        cyc = torch.zeros(sms, dtype=torch.int64, device="cuda")
        smem = 1024 + 64 * 128 + ((n * 128 + 1023) // 1024) * 1024 + 4 * 16 * 2304 + 64
        for _ in range(2):
            launch(fn, sms, nwg * 128 + 32, (out, cyc, iters, src, src.numel()), shared_mem=smem)
        torch.cuda.synchronize()
        assert torch.all(out == 0), expr
        per = statistics.median(cyc.tolist()) / (nwg * iters * 2)
        stream_rows.append({"N": n, "warpgroups": nwg, "group": 2, "decode": dec == 1, "b_from_ring": bring == "true",
                            "cycles_per_wgmma_per_sm": round(per, 1)})
        print(f"N={n:3d} warpgroups={nwg} decode={dec == 1} B from the ring={bring == 'true'}, with a copy-engine "
              f"stream: {per:6.1f} SM cycles per wgmma", flush=True)
    (out_dir / "wgmma_rate.json").write_text(json.dumps({"device": device_info(), "iters": iters, "rows": rows,
                                                         "with_stream": stream_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
