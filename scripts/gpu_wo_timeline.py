"""Where does a v5 CTA spend its time? (issue 3, ninth pass)

Launches the timeline builds (V5_TIMELINES: PROF, clock64 stamps per unit and per sampled group; the math is
the recorded build's) and summarizes, per build, in SM cycles (medians over CTAs, warpgroups and units 1..):
- ramp: kernel start -> the first stage is full (the producer's start, its first weight issue, and the spacing
  of its first three issues);
- busy: a stage full -> its unit's last group committed and retired (the consumer's work per unit);
- wait: a warpgroup asks for its next stage -> the stage is full (waiting for data);
- period: one unit to the next (busy + wait + the flush at a row-group change);
- copy latency: the producer issues a unit's copies -> the stage is full, for units the consumer waited on;
- group: a sampled group's start -> committed (decode and issue) -> its wait returns, and start to the next start
  (units 4 and 8 of warpgroup 0);
- hold: a unit's end -> its stage released; reissue: the release -> the producer issued the unit reusing it;
- span: the CTA's start -> its last warpgroup's end; the clock rate from globaltimer.
Every non-diagnostic build is validated against the fp32 reference first. Also times each build's twin without
stamps as the benchmark does (graph replay, kernel + wo_finalize, two weights in turn).
Writes $OUT/timeline.json (summaries) and $OUT/timeline_stamps.pt (raw tables). Diagnostic only.

Run on the device: PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 scripts/gpu_wo_timeline.py [--only 7,35]
(--only: the full builds of those LEAN values only; --scrub: before every launch, evict L2 (a read of 2.5x L2 of other
data) and rewrite x, so each launch starts cold as after other kernels: kernel code, workspace and counters from DRAM;
--M M: x of M tokens, the builds whose token tile is the one that serves M only, e.g. --M 1 for the 8-token builds at
M = 1; default: each build at its token tile.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wo_profile import l2_scrubber, log, wo_weights  # noqa: E402


def med(v):
    v = [float(a) for a in v]
    return round(statistics.median(v), 1) if v else None


def summarize(tab, nwg: int, stages: int) -> dict:
    """tab: int64 [SMs, 512] stamps of one launch (prof_table slots) -> medians in SM cycles."""
    busy, wait, period, lat, ramp, span, gstart, gret, rate = [], [], [], [], [], [], [], [], []
    gdec, gwait, hold, react, pstart, first, spacing = [], [], [], [], [], [], []
    for row in tab.tolist():
        c0 = row[1]
        ends = [row[2 + w] for w in range(nwg) if row[2 + w]]
        if not ends:
            continue
        span.append(max(ends) - c0)
        if row[7] > row[0]:
            rate.append((row[2] - c0) / (row[7] - row[0]))  # cycles per ns
        issue = [row[8 + i] for i in range(32)]
        if row[40] and issue[2]:  # the producer's start, its first issue, and the spacing of the first three
            pstart.append(row[40] - c0)
            first.append(issue[0] - c0)
            spacing += [issue[1] - issue[0], issue[2] - issue[1]]
        for w in range(nwg):
            st = [row[64 + 64 * w + 4 * i: 64 + 64 * w + 4 * i + 3] for i in range(16)]
            n = sum(1 for s in st if s[2])  # units with an end stamp
            if n == 0:
                continue
            ramp.append(st[0][1] - c0)
            for i in range(1, n):
                busy.append(st[i][2] - st[i][1])
                wait.append(st[i][1] - st[i][0])
                period.append(st[i][1] - st[i - 1][1])
                if st[i][1] - st[i][0] > 200 and issue[i]:
                    lat.append(st[i][1] - issue[i])
        # ring: a stage is released (every warpgroup) -> the producer has issued the unit that reuses it
        rel = [max(row[64 + 64 * w + 4 * i + 3] for w in range(nwg)) for i in range(16)]
        for i in range(16 - stages):
            if rel[i] and all(row[64 + 64 * w + 4 * i + 3] for w in range(nwg)) and issue[i + stages]:
                react.append(issue[i + stages] - rel[i])
            if rel[i] and row[64 + 4 * i + 2]:
                hold.append(row[64 + 4 * i + 3] - row[64 + 4 * i + 2])
        for j in range(2):
            g = [row[320 + 48 * j + 3 * k: 320 + 48 * j + 3 * k + 3] for k in range(16)]
            g = [x for x in g if x[2]]
            gret += [c - a for a, _, c in g]
            gdec += [b - a for a, b, _ in g]
            gwait += [c - b for _, b, c in g]
            gstart += [g[k + 1][0] - g[k][0] for k in range(len(g) - 1)]
    return {"ctas": len(span), "span_cycles": med(span), "span_max_cycles": max(span) if span else None,
            "ghz": round(statistics.median(rate), 3) if rate else None, "ramp": med(ramp), "busy": med(busy),
            "busy_mean": round(sum(busy) / len(busy), 1) if busy else None, "wait": med(wait),
            "wait_mean": round(sum(wait) / len(wait), 1) if wait else None, "period": med(period),
            "copy_latency_when_waited": med(lat), "waited_units": len(lat), "units": len(busy),
            "group_retire": med(gret), "group_decode_issue": med(gdec), "group_wait": med(gwait),
            "group_to_group": med(gstart), "producer_start": med(pstart), "first_issue": med(first),
            "first_issue_spacing": med(spacing), "hold_after_end": med(hold), "producer_reissue_after_release": med(react),
            "stages": stages}


def main() -> int:
    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_wo_timeline"))
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    from workbench.runtime import device_info
    from workbench.runtime.kernels import name_expressions
    from workbench.techniques import wo_gemm as wo
    from workbench.techniques import wo_gemm_v5 as v5

    log(f"device {device_info()}")
    K = wo.K_IN
    pws, wref = wo_weights()  # two weights used in turn, so no launch finds the previous one's weight in L2
    result, raw = {"device": device_info(), "builds": {}}, {}
    built = set(name_expressions("wo_gemm_v5"))
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    scrub = "--scrub" in sys.argv
    m_arg = int(sys.argv[sys.argv.index("--M") + 1]) if "--M" in sys.argv else None
    evict_l2 = l2_scrubber() if scrub else None
    result["scrub"] = scrub
    for cfg in v5.V5_TIMELINES:
        if only and not any(f"lean{o}_" in str(cfg) and "diag" not in str(cfg) for o in only):
            continue
        if m_arg is not None and cfg.tokp != v5.v5_tokp_for(m_arg):
            continue
        M = m_arg or cfg.tokp
        x = wo.make_activations(M, K, seed=400 + M)
        twin = dataclasses.replace(cfg, prof=False)
        entry = {"M": M, "config": str(cfg)}
        if cfg.diag == 0:  # the stamps must not change the math
            ref = wo.reference(x, wref)
            out, _ = v5.v5_timeline(x, pws[0], cfg)
            entry["validation"] = wo.validate(out, ref)
            if not entry["validation"]["passed"]:
                log(f"{cfg}: REJECTED {entry['validation']}")
                result["builds"][str(cfg)] = entry
                continue
        tabs = []
        x_src = x.clone()
        for r in range(6):
            if scrub:
                evict_l2()
                x.copy_(x_src)
            tabs.append(v5.v5_timeline(x, pws[r % 2], cfg)[1].cpu())
        raw[str(cfg)] = tabs[-1]
        entry["runs"] = [summarize(t, cfg.nwg, cfg.stages) for t in tabs[1:]]
        # the twin without stamps, graph replay as the benchmark times it (validated first unless diagnostic)
        times = {}
        if twin.expr in built:
            fns = [lambda p=p, x=x, c=twin: v5.w4a16_gemm_v5(x, p, c) for p in pws]
            if twin.diag == 0:
                assert wo.validate(fns[0](), wo.reference(x, wref))["passed"], twin
            times["twin_replay_us"] = round(wo._time(fns).median_us, 2)
        entry["twin"] = times
        result["builds"][str(cfg)] = entry
        s = entry["runs"][-1]
        log(f"M={M} {cfg}: span {s['span_cycles']} cyc ({s['ghz']} GHz), ramp {s['ramp']} (producer start "
            f"{s['producer_start']}, first issue {s['first_issue']}, then every {s['first_issue_spacing']}), busy {s['busy']} "
            f"(mean {s['busy_mean']}), wait {s['wait']} (mean {s['wait_mean']}), period {s['period']}, "
            f"copy latency {s['copy_latency_when_waited']} ({s['waited_units']}/{s['units']} waited), "
            f"group: decode+issue {s['group_decode_issue']} wait {s['group_wait']} period {s['group_to_group']}; "
            f"hold {s['hold_after_end']}, reissue {s['producer_reissue_after_release']}; twin {times}")
        (out_dir / "timeline.json").write_text(json.dumps(result, indent=1))
    torch.save(raw, out_dir / "timeline_stamps.pt")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
