"""Figures for NVFP4 and the wo GEMM (pure functions: data in, go.Figure out)."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from . import COLORS


def fig_e2m1_grid() -> go.Figure:
    """The 16 E2M1 codes on the number line, with the RNE decision thresholds (ties marked)."""
    from ..techniques import nvfp4 as nv

    vals = nv.E2M1_VALUES.tolist()
    fig = go.Figure()
    fig.add_scatter(x=vals, y=[0] * 16, mode="markers+text", text=[f"{c}" for c in range(16)],
                    textposition="top center", marker=dict(size=12, color=COLORS["other"]), name="code value")
    for thr, _inclusive in nv.E2M1_THRESHOLDS:
        for s in (1, -1):
            fig.add_vline(x=s * thr, line=dict(dash="dot", color="#999"))
    fig.add_scatter(x=[t for t, _ in nv.E2M1_THRESHOLDS], y=[-0.3] * 7, mode="text",
                    text=["tie->0", "tie->1", "tie->1", "tie->2", "tie->2", "tie->4", "tie->4"], name="ties (RNE)")
    fig.update_layout(title="E2M1 grid (label = 4-bit code; dotted = rounding thresholds, ties to even code)",
                      xaxis_title="value", yaxis=dict(visible=False, range=[-0.6, 0.6]), height=300)
    return fig


def fig_block_scales(x_row: torch.Tensor, n_blocks: int = 8) -> go.Figure:
    """One row's first blocks: original values, dequantized NVFP4 values and each block's scale * 6."""
    from ..techniques import nvfp4 as nv

    x = x_row[: 16 * n_blocks].float().view(1, -1)
    q = nv.quantize_reference(x, "tensor")
    d = nv.dequantize_reference(q)[0]
    sf = nv.e4m3_decode(q.scales[0]) / q.global_scale
    k = list(range(x.shape[1]))
    fig = go.Figure()
    fig.add_scatter(x=k, y=x[0].tolist(), mode="markers", name="x (bf16)", marker=dict(color=COLORS["baseline"]))
    fig.add_scatter(x=k, y=d.tolist(), mode="markers", name="NVFP4 dequantized", marker=dict(symbol="x",
                                                                                            color=COLORS["optimized"]))
    for b in range(n_blocks):
        top = float(6 * sf[b])
        fig.add_scatter(x=[16 * b, 16 * b + 15], y=[top, top], mode="lines", line=dict(color=COLORS["bound"]),
                        showlegend=b == 0, name="block range: 6 * sf / g")
        fig.add_scatter(x=[16 * b, 16 * b + 15], y=[-top, -top], mode="lines", line=dict(color=COLORS["bound"]),
                        showlegend=False)
    fig.update_layout(title="One row, 16-element blocks: each block's E4M3 scale sets its grid",
                      xaxis_title="k", yaxis_title="value")
    return fig


def fig_bytes(bytes_by_format: dict[str, int], copy_TBps: float | None = None) -> go.Figure:
    """Weight bytes per format, and the read time at a copy bandwidth."""
    names = list(bytes_by_format)
    mb = [bytes_by_format[n] / 1e6 for n in names]
    text = [f"{m:.1f} MB" + (f" / {m / (copy_TBps * 1e6) * 1e6:.0f} us" if copy_TBps else "") for m in mb]
    fig = go.Figure(go.Bar(x=names, y=mb, text=text, textposition="outside"))
    fig.update_layout(title="wo weight bytes (7168 x 16384)" + (f", read time at {copy_TBps:.2f} TB/s" if copy_TBps
                                                                else ""), yaxis_title="MB")
    return fig


def fig_speedup_vs_m(record: dict) -> go.Figure:
    """Speedup over cuBLAS bf16 of every variant vs M (log x), from a wo_gemm record."""
    cases = sorted(record["cases"], key=lambda c: c["params"]["M"])
    variants: list[str] = []
    for c in cases:
        variants += [v for v in c["variants"] if v not in variants]
    fig = go.Figure()
    for v in variants:
        xs, ys = [], []
        for c in cases:
            if v in c["variants"]:
                xs.append(c["params"]["M"])
                ys.append(c["variants"][c["baseline"]]["median_us"] / c["variants"][v]["median_us"])
        role = "optimized" if v == "optimized" else "baseline" if v == cases[0]["baseline"] else None
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=v,
                        line=dict(color=COLORS.get(role)) if role else None)
    fig.add_scatter(x=[c["params"]["M"] for c in cases],
                    y=[c["variants"][c["baseline"]]["median_us"] / c["bound_us"] for c in cases],
                    mode="lines", line=dict(dash="dash", color=COLORS["bound"]), name="NVFP4 bound")
    fig.add_hline(y=3.0, line=dict(dash="dot", color="#999"), annotation_text="3x target")
    fig.update_layout(title=f"wo GEMM speedup over cuBLAS bf16 ({record['device']['name']})",
                      xaxis=dict(type="log", title="M (tokens)"), yaxis_title="speedup (x)")
    return fig


def fig_time_vs_bound(record: dict) -> go.Figure:
    """Time of each variant with the NVFP4 and bf16 bounds, vs M (log-log)."""
    cases = sorted(record["cases"], key=lambda c: c["params"]["M"])
    fig = go.Figure()
    variants: list[str] = []
    for c in cases:
        variants += [v for v in c["variants"] if v not in variants]
    for v in variants:
        pts = [(c["params"]["M"], c["variants"][v]["median_us"]) for c in cases if v in c["variants"]]
        fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=v)
    fig.add_scatter(x=[c["params"]["M"] for c in cases], y=[c["bound_us"] for c in cases], mode="lines",
                    line=dict(dash="dash", color=COLORS["bound"]), name="bound (NVFP4 bytes / flops)")
    fig.add_scatter(x=[c["params"]["M"] for c in cases], y=[c["params"].get("bound_bf16_us") for c in cases],
                    mode="lines", line=dict(dash="dot", color=COLORS["baseline"]), name="bound (bf16 bytes / flops)")
    fig.update_layout(title="wo GEMM time vs bound", xaxis=dict(type="log", title="M (tokens)"),
                      yaxis=dict(type="log", title="time (us, median)"))
    return fig


def fig_accuracy(rows: list[dict], metric: str = "rel_l2") -> go.Figure:
    """Error of each format vs outlier magnitude (rows from wo_gemm.accuracy_study)."""
    fmts = list(dict.fromkeys(r["format"] for r in rows))
    fig = go.Figure()
    for f in fmts:
        rs = sorted((r for r in rows if r["format"] == f), key=lambda r: r["outlier_scale"])
        fig.add_scatter(x=[r["outlier_scale"] for r in rs], y=[r[metric] for r in rs], mode="lines+markers", name=f)
    fig.update_layout(title=f"wo output error vs fp32 ({metric}); x = outlier channel magnitude (1 = Gaussian)",
                      xaxis=dict(type="log", title="outlier scale"),
                      yaxis=dict(type="log" if metric != "cosine" else "linear", title=metric))
    return fig


def wo_card_rows(records: list[dict], ms: tuple[int, ...] | None = (1, 8, 32, 64)) -> list[dict]:
    """One row per record (GPU model) and M (`ms`; None: every M of the record): the dispatcher's time beside its
    bound and the two baselines of the same run, the ratios (ordinary launch and PDL), the time 3x cuBLAS bf16 needs,
    the path and fused config the dispatcher took, and whether the case validated."""
    rows = []
    for rec in records:
        for c in sorted(rec["cases"], key=lambda c: c["params"]["M"]):
            M, p = c["params"]["M"], c["params"]
            if ms is not None and M not in ms:
                continue
            v = c["variants"]
            opt, bf16, fp8 = v["optimized"]["median_us"], v["cublas_bf16"]["median_us"], v["torch_fp8"]["median_us"]
            pdl = v.get("optimized_pdl", {}).get("median_us")
            rows.append({"card": rec["device"]["name"], "commit": rec["git_commit"], "M": M,
                         "optimized us": round(opt, 2), "bound us": round(c["bound_us"], 2),
                         "% of bound": round(100 * c["bound_us"] / opt), "cuBLAS bf16 us": round(bf16, 2),
                         "vs bf16": round(bf16 / opt, 2), "vs fp8": round(fp8 / opt, 2),
                         "PDL us": round(pdl, 2) if pdl else None,
                         "PDL % of bound": round(100 * c["bound_us"] / pdl) if pdl else None,
                         "PDL vs bf16": round(bf16 / pdl, 2) if pdl else None,
                         "PDL vs fp8": round(fp8 / pdl, 2) if pdl else None,
                         "3x bf16 needs us": round(bf16 / 3, 2), "path": p.get("dispatch"),
                         "fused config": p.get(p.get("dispatch", "").replace("fused_", "") + "_config"),
                         "validated": c["validation"]["passed"]})
    return rows


def quantize_card_rows(rec: dict) -> list[dict]:
    """Per case of an nvfp4 record: its default kernel (the case's `optimized` variant) and its fastest CuPy kernel,
    each as % of the case's copy-bandwidth bound, and whether every variant was exact."""
    rows = []
    for c in rec["cases"]:
        v, bound = c["variants"], c["bound_us"]
        best = min((n for n in v if n.startswith("cupy")), key=lambda n: v[n]["median_us"])
        rows.append({"case": c["name"], "bound us": round(bound, 2), "default": c["optimized"],
                     "default us": round(v[c["optimized"]]["median_us"], 2),
                     "default % of bound": round(100 * bound / v[c["optimized"]]["median_us"]),
                     "best": best, "best us": round(v[best]["median_us"], 2),
                     "best % of bound": round(100 * bound / v[best]["median_us"]), "exact": c["validation"]["passed"]})
    return rows


def quant_diag_rows(diag: dict, run: int = -1) -> list[dict]:
    """Rows of the quantizer diagnostic (data/diagnostics/quant_v6_*.json, one run: the last by default): per shape
    and build, the median time beside the copy-bandwidth bound, and whether the build was exact (None: a
    no-encode twin, never validated), fastest first."""
    r = diag["runs"][run]
    rows = []
    for case, c in r["cases"].items():
        for name, v in sorted(c["variants"].items(), key=lambda kv: kv[1]["median_us"]):
            rows.append({"commit": r["git_commit"], "case": case, "build": name, "us": v["median_us"],
                         "bound us": c["bound_us"], "% of bound": v["pct_of_bound"], "exact": v["validated"]})
    return rows


def quant_diag_fastest(rows: list[dict], patterns: dict[str, str]) -> dict[str, dict[str, dict]]:
    """Per case of quant_diag_rows' rows, per label of `patterns` (label -> regular expression searched in the build
    name): the fastest matching row; a label no build of the case matches is left out."""
    import re

    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        for label, pat in patterns.items():
            if re.search(pat, r["build"]):
                best = out.setdefault(r["case"], {}).get(label)
                if best is None or r["us"] < best["us"]:
                    out[r["case"]][label] = r
    return out


def quant_diag_summary(rows: list[dict], patterns: dict[str, str]) -> dict[str, str]:
    """Per case of quant_diag_rows' rows, one line: for each label of `patterns` (quant_diag_fastest) the fastest
    matching build, its time and its % of the copy-bandwidth bound."""
    return {case: f"{case}: " + ", ".join(f"fastest {label} {r['build']} {r['us']} us ({r['% of bound']}% of the bound)"
                                          for label, r in best.items())
            for case, best in quant_diag_fastest(rows, patterns).items()}


# Issue 3's speed targets for the dispatcher, each against a baseline of the same run: (target, baseline variant,
# factor the dispatcher must be faster by, the M it applies to; None: every M of the record). "At most 1.15x
# cuBLAS bf16's time" is a factor of 1 / 1.15.
WO_TARGETS = (("3x cuBLAS bf16", "cublas_bf16", 3.0, (1, 8, 32, 64)),
              ("1.5x torch fp8", "torch_fp8", 1.5, (1, 8, 32)),
              ("within 1.15x of cuBLAS bf16", "cublas_bf16", 1 / 1.15, None))
WO_REL_L2_MAX = 1e-3  # the fused kernel against the fp32 GEMM of the dequantized operands
WO_TARGET_SHAPE = (7168, 16384)  # (N, K) the targets are stated for; other cases (a smoke run's) are not judged


def _judged_case(c: dict, kind: str) -> bool:
    """Whether a record's case has a target's shape: kind "wo" (WO_TARGET_SHAPE) or "quantize" (QUANT_TARGET_CASES)."""
    if kind == "wo":
        return (c["params"].get("N"), c["params"].get("K")) == WO_TARGET_SHAPE
    return c["name"] in QUANT_TARGET_CASES


def judged_records(records: list[dict], kind: str) -> tuple[list[dict], list[dict]]:
    """(records with cases of the target shapes, the others) for kind "wo" or "quantize" (_judged_case): a smoke
    run's smaller shapes say nothing about the targets."""
    def ok(rec):
        return any(_judged_case(c, kind) for c in rec["cases"])
    return [r for r in records if ok(r)], [r for r in records if not ok(r)]


def wo_target_rows(records: list[dict]) -> list[dict]:
    """Per record (GPU model), target of WO_TARGETS and M: the ratio it needs, the ratio measured with ordinary
    launches and with PDL (baseline time over the dispatcher's, both from that record's run), and whether each meets
    it; then one row per record for the accuracy target (the largest rel-L2 of `optimized` and `optimized_pdl` over
    its cases). Only cases of WO_TARGET_SHAPE are judged (a record without any, a smoke run's, gives no rows). Ratios
    are compared unrounded; they are shown to 2 decimals."""
    rows = []
    for rec in records:
        card, commit = rec["device"]["name"], rec["git_commit"]
        cases = sorted((c for c in rec["cases"] if _judged_case(c, "wo")), key=lambda c: c["params"]["M"])
        if not cases:
            continue
        for target, base, factor, ms in WO_TARGETS:
            for c in cases:
                M, v = c["params"]["M"], c["variants"]
                if ms is not None and M not in ms:
                    continue
                ratio = v[base]["median_us"] / v["optimized"]["median_us"]
                pdl = v.get("optimized_pdl", {}).get("median_us")
                pdl_ratio = v[base]["median_us"] / pdl if pdl else None
                rows.append({"card": card, "commit": commit, "target": target, "M": M, "needs": round(factor, 2),
                             "measured": round(ratio, 2), "met": ratio >= factor,
                             "with PDL": round(pdl_ratio, 2) if pdl_ratio else None,
                             "met with PDL": pdl_ratio >= factor if pdl_ratio else None})
        val = [c["validation"] for c in cases]
        worst = max(x.get(f"{n}.rel_l2", 0.0) for x in val for n in ("optimized", "optimized_pdl"))
        rows.append({"card": card, "commit": commit, "target": f"rel-L2 <= {WO_REL_L2_MAX:g}", "M": "all",
                     "needs": WO_REL_L2_MAX, "measured": worst, "met": worst <= WO_REL_L2_MAX and all(x["passed"] for x in val),
                     "with PDL": None, "met with PDL": None})
    return rows


QUANT_TARGET_PCT = 85  # issue 3: the quantize kernels at >= 85% of measured copy bandwidth
QUANT_TARGET_CASES = ("quantize_8192x7168", "quantize_8192x16384")  # the shapes the target is stated for


# The quantize variants the target applies to: each layout's default kernel (the record's "optimized" is the swizzled
# one, what GEMMs read).
QUANT_TARGET_VARIANTS = (("swizzled", "cupy_quantize_swizzled"), ("linear", "cupy_quantize_linear"))


def quantize_target_rows(records: list[dict]) -> list[dict]:
    """Per nvfp4 record (GPU model), quantize case of QUANT_TARGET_CASES and layout (QUANT_TARGET_VARIANTS; a layout
    the record lacks is skipped): the default kernel's % of the copy-bandwidth bound (unrounded for the comparison) against
    QUANT_TARGET_PCT, and whether every variant of the case was exact."""
    rows = []
    for rec in records:
        for c in rec["cases"]:
            if not _judged_case(c, "quantize"):
                continue
            for layout, name in QUANT_TARGET_VARIANTS:
                if name not in c["variants"]:
                    continue
                pct = 100 * c["bound_us"] / c["variants"][name]["median_us"]
                rows.append({"card": rec["device"]["name"], "commit": rec["git_commit"],
                             "target": f"quantize >= {QUANT_TARGET_PCT}% of copy", "case": c["name"],
                             "layout": layout, "needs": QUANT_TARGET_PCT, "measured": round(pct, 1),
                             "met": pct >= QUANT_TARGET_PCT and c["validation"]["passed"]})
    return rows


def run_commits(runs: list[dict]) -> list[str | None]:
    """The commit of each A/B run (data/diagnostics/wo_ab_*.json), from "commit abcdef0" in its note; a run whose
    note names none is the same device call as the run before it."""
    import re

    out, commit = [], None
    for run in runs:
        found = re.search(r"commit ([0-9a-f]{7})", run.get("what", ""))
        commit = found[1] if found else commit
        out.append(commit)
    return out


def ab_rows(ab: dict, what: str = "") -> list[dict]:
    """Rows of an A/B diagnostic (data/diagnostics/wo_ab_*.json, scripts/gpu_wo_ab.py): per run whose note contains
    `what`, per M and build, the median time beside the weight-read bound and whether the build validated; each run's
    commit and its fastest build per M are named, so the rows read within one device call."""
    rows = []
    for run, commit in zip(ab["runs"], run_commits(ab["runs"])):
        if what not in run.get("what", ""):
            continue
        for m, case in run["cases"].items():
            timed = {n: b for n, b in case["builds"].items() if "median_us" in b}
            best = min(timed, key=lambda n: timed[n]["median_us"]) if timed else None
            for name, b in timed.items():
                rows.append({"commit": commit, "M": int(m.lstrip("M")), "build": name,
                             "us": b["median_us"], "bound us": case["bound_us"],
                             "% of bound": round(100 * case["bound_us"] / b["median_us"]),
                             "fastest in its run": name == best,
                             "validated": b.get("validation", {}).get("passed")})
    return rows


def v9_run(diag: dict, run: int | str = -1) -> dict:
    """One run of the v9 / v9p diagnostic: by index, or by the commit it ran at."""
    if isinstance(run, str):
        found = [r for r in diag["runs"] if r["commit"] == run]
        if not found:
            raise KeyError(f"no run at commit {run!r} in this diagnostic")
        return found[0]
    return diag["runs"][run]


def v9_rows(diag: dict, run: int | str = -1, only: tuple[str, ...] = ()) -> list[dict]:
    """Rows of the v9 / v9p diagnostic (data/diagnostics/wo_v9_*.json, scripts/gpu_wo_v9.py; one run, by index or
    commit, the last by default): per M and build (only: builds whose names contain one of these; the recorded
    dispatcher and cuBLAS always), the median time beside the weight-read bound, the ratio to cuBLAS bf16 of the same
    run, and the rel-L2 against the fp32 reference (None: a diagnostic twin, never validated). Fastest first within
    each M."""
    r = v9_run(diag, run)
    rows = []
    for case, c in sorted(r["cases"].items(), key=lambda kv: int(kv[0].split("M")[-1])):
        keep = {n: v for n, v in c["rows"].items()
                if not only or n.startswith(("recorded", "cublas")) or any(o in n for o in only)}
        for name, v in sorted(keep.items(), key=lambda kv: kv[1]["median_us"]):
            rows.append({"commit": r["commit"], "M": int(case.split("M")[-1]), "build": name, "us": v["median_us"],
                         "bound us": c["bound_us"], "% of bound": v["pct_of_bound"],
                         "vs cuBLAS bf16": v["vs_cublas_bf16"], "rel-L2": v["rel_l2"]})
    return rows


def v9_ncu_rows(diag: dict, bounds_us: dict[int, float]) -> list[dict]:
    """The Nsight Compute rows of the v9 / v9p diagnostic (one launch per build), each launch's duration beside the
    weight-read bound of its M (bounds_us: nbutil.wo_bounds of the same card; None where it has no such M)."""
    rows = []
    for r in diag["ncu"]["rows"]:
        b = bounds_us.get(r["M"])
        rows.append({**r, "bound us": b, "% of bound": round(100 * b / r["duration_us"]) if b else None})
    return rows


def x_share_rows(trace: dict, lean: int = 3215, bounds_us: dict | None = None) -> list[dict]:
    """What x's copies cost, from a scripts/gpu_wo_trace.py --diag run with the DIAG 12 and 5 twins
    (data/diagnostics/wo_trace_x_h200.json): per M, the GEMM kernel's CUPTI time of the stream alone with and
    without x (DIAG 1, 12) and of the full kernel with and without x (the build, DIAG 5), each for the builds with
    LEAN `lean`, and the differences; bounds_us ({M: bound in us} of the card, from its wo_gemm record): each row
    also carries its bound. Only the M whose four builds all ran are listed."""
    def gemm_us(entry: dict) -> float | None:
        k = entry["trace"].get("kernels", {}) if isinstance(entry.get("trace"), dict) else {}
        return next((t["median_us"] for name, t in k.items() if "w4a16" in name), None)

    rows = []
    for m, case in trace["cases"].items():
        kind = {}
        for name, e in case["variants"].items():
            if not name.endswith(f"_grp_lean{lean}") or not name.startswith("v5_"):
                continue
            tag = ("stream" if "_diag_stream_grp" in name else "stream_no_x" if "_diag_stream_no_x_grp" in name
                   else "full_no_x" if "_diag_no_x_grp" in name else "full" if "_diag_" not in name else None)
            if tag:
                kind[tag] = gemm_us(e)
        if len(kind) == 4 and None not in kind.values():
            rows.append({"M": int(m), "stream us": round(kind["stream"], 2),
                         "stream without x us": round(kind["stream_no_x"], 2),
                         "x in the stream us": round(kind["stream"] - kind["stream_no_x"], 2),
                         "full kernel us": round(kind["full"], 2), "full without x us": round(kind["full_no_x"], 2),
                         "x in the full kernel us": round(kind["full"] - kind["full_no_x"], 2),
                         "bound us": round((bounds_us or {}).get(int(m), float("nan")), 2)})
    return sorted(rows, key=lambda r: r["M"])


def ab_protocol_rows(ab: dict) -> list[dict]:
    """The A/B runs timed with their baselines (`--baselines`): per M and build, the time beside the bound and the
    ratios to cuBLAS bf16 and torch fp8 of the same rounds, under the record's protocol or with L2 scrubbed
    (`--scrub`), sorted so each build's two protocols sit together."""
    rows = []
    for run, commit in zip(ab["runs"], run_commits(ab["runs"])):
        for m, case in run.get("cases", {}).items():
            b = case["builds"]
            if "cublas_bf16" not in b:
                continue
            for name, e in b.items():
                if name in ("cublas_bf16", "torch_fp8") or "median_us" not in e:
                    continue
                rows.append({"M": int(m[1:]), "build": name, "commit": commit,
                             "protocol": "scrubbed" if run.get("scrub") else "record",
                             "us": e["median_us"], "bound us": case["bound_us"],
                             "% of bound": round(100 * case["bound_us"] / e["median_us"]),
                             "cuBLAS bf16 us": b["cublas_bf16"]["median_us"],
                             "vs cuBLAS bf16": e["vs_cublas_bf16"], "vs fp8": e["vs_torch_fp8"]})
    rows.sort(key=lambda r: (r["M"], r["build"], r["commit"] or "", r["protocol"]))
    return rows


def power_rows(power: dict, bounds_us: dict | None = None) -> list[dict]:
    """Rows of a clock and power diagnostic (data/diagnostics/wo_power_*.json, scripts/gpu_wo_power.py), its last run:
    per build (sorted by M), the time per call over 3 s of back-to-back graph replays, the SM clock the probe measured
    beside it (median of its probes: SM cycles over global-timer ns) and the one nvidia-smi reported (median), the
    board power (median), how many of nvidia-smi's samples carried the software power cap (reason 0x4), and for the
    fused builds that compute an output the ratio of the same run's cuBLAS bf16 time at that M to theirs. bounds_us
    ({M: weight-read bound in us}, from the card's wo_gemm record): each row also carries its M's bound."""
    import re
    import statistics

    builds = power["runs"][-1]["builds"]
    m_of = {label: int(re.match(r"M=(\d+) ", label)[1]) for label in builds}
    cublas = {m_of[label]: b["us_per_call"] for label, b in builds.items() if "cuBLAS" in label}
    rows = []
    for label, b in builds.items():
        m, reasons = m_of[label], b.get("event_reasons", {})
        capped = sum(n for code, n in reasons.items() if int(code, 16) & 0x4)
        val = b.get("validation")
        row = {"M": m, "build": label.split(" ", 1)[1], "us / call": b["us_per_call"],
               "probe GHz": statistics.median(b["probe_GHz"]) if b.get("probe_GHz") else None,
               "nvidia-smi MHz": b.get("sm_MHz_median"), "W": b.get("power_W_median"),
               "power-capped samples": f"{capped} / {sum(reasons.values())}",
               "validated": val["passed"] if val else "no output (diagnostic)"}
        if val and "cuBLAS" not in label and m in cublas:
            row["cuBLAS bf16 / this"] = round(cublas[m] / b["us_per_call"], 2)
        if (bounds_us or {}).get(m):
            row["bound us"] = round(bounds_us[m], 2)
        rows.append(row)
    return sorted(rows, key=lambda r: r["M"])


def clock_stream_rows(diag: dict, copy_TBps: float | None = None) -> list[dict]:
    """Rows of the clock-companion diagnostic (data/diagnostics/clock_stream_*.json, scripts/gpu_clock_stream.py), its
    last run: per workload and companion (the work that held 4 SMs, or every SM, beside it), the median time per call,
    the bytes it moves per second, its time over the same workload's beside the idle companion ("sleep x4"), and the
    SM clock the companion measured on its own SMs. copy_TBps (the card's measured copy bandwidth): each row also
    carries its rate as a percentage of it, the workload's bound."""
    rows = []
    for r in diag["runs"][-1]["rows"]:
        row = {"workload": r["workload"], "companion": r["companion"], "us / call": round(r["us_per_call"], 2),
               "GB/s": r["GB_per_s"], "vs sleep x4": r["vs_sleep"], "companion GHz": r["companion_GHz"],
               "companion covered the timing": r["covered"]}
        if copy_TBps:
            row["% of copy bandwidth"] = round(100 * r["GB_per_s"] / (1000 * copy_TBps), 1)
        rows.append(row)
    return rows


def timeline_rows(diag: dict, bounds_us: dict | None = None) -> list[dict]:
    """Rows of the v5 timeline diagnostic (data/diagnostics/wo_timeline_h100.json, scripts/gpu_wo_timeline.py): per
    timeline build, the last run's medians in SM cycles and the stamp-free twin's graph-replay time. bounds_us
    ({M: weight-read bound in us}, from the wo_gemm record): each row also carries its bound, per call and per unit
    in SM cycles at the build's clock (the wo shape's units of 64 MT NWG rows x KC k spread over the SMs)."""
    import re

    from ..techniques.wo_gemm import K_IN, N_OUT

    rows = []
    for name, b in diag["builds"].items():
        if not b.get("runs"):
            continue
        s = b["runs"][-1]
        row = {"M": b["M"], "build": name.removesuffix("_prof"), "ramp": s["ramp"], "busy / unit": s["busy"],
               "wait / unit (mean)": s["wait_mean"], "period": s["period"]}
        bound = (bounds_us or {}).get(b["M"])
        mt, nwg, kc = (int(v) for v in re.search(r"_mt(\d+)_wg(\d+)_kc(\d+)_", name).groups())
        units_per_sm = (N_OUT // (64 * mt * nwg)) * (K_IN // kc) / diag["device"]["sm_count"]
        if bound and s["ghz"]:
            row["bound / unit"] = round(bound * 1e3 * s["ghz"] / units_per_sm)
        row.update({"group: decode + issue": s.get("group_decode_issue"), "group: wait": s.get("group_wait"),
                    "span (cycles)": s["span_cycles"], "GHz": s["ghz"],
                    "twin us / call": b.get("twin", {}).get("twin_replay_us")})
        if bound:
            row["bound us"] = round(bound, 2)
        rows.append(row)
    return rows


def fig_cta_timeline(diag: dict) -> go.Figure:
    """One bar row per sampled CTA of the timeline diagnostic: warpgroup 0's wait for each stage (light) and its work
    on the unit (dark), the producer's copy issues (ticks), in SM cycles from the CTA's start."""
    sample = diag["sample_ctas"]
    bars = {"wait": ([], [], []), "busy": ([], [], [])}  # (length, start, row) per kind
    ticks_x, ticks_y = [], []
    for cta, d in sample["ctas"].items():
        y = f"CTA {cta}"
        for u in d["wg0_units"]:
            for kind, a, b in (("wait", u["ask"], u["full"]), ("busy", u["full"], u["end"])):
                bars[kind][0].append(b - a)
                bars[kind][1].append(a)
                bars[kind][2].append(y)
        ticks_x += d["producer_issue"]
        ticks_y += [y] * len(d["producer_issue"])
    fig = go.Figure()
    for kind, color in (("wait", "#c6dbef"), ("busy", "#2171b5")):
        x, base, y = bars[kind]
        fig.add_trace(go.Bar(x=x, base=base, y=y, orientation="h", marker_color=color, name=f"warpgroup 0 {kind}",
                             hovertemplate=kind + ": from %{base} for %{x} cycles<extra></extra>"))
    fig.add_trace(go.Scatter(x=ticks_x, y=ticks_y, mode="markers", name="producer: copies issued",
                             marker={"symbol": "line-ns-open", "size": 14, "color": "#d94801"}))
    fig.update_layout(barmode="overlay", height=320, xaxis_title="SM cycles from the CTA's start",
                      title=f"{sample['build'].removesuffix('_prof')}: one CTA's units ({diag['device']['name']})")
    return fig


def v9_timeline_rows(tl: dict, run: str, bound_us: float | None = None) -> list[dict]:
    """Rows of the v9p timelines (data/diagnostics/wo_v9_timeline_*.json, scripts/gpu_wo_v9_timeline.py), one run
    by the commit it ran at: per stamped build (name ending in the producer order), medians over the CTAs of one
    launch in SM cycles from the CTA's start: stage 0 full (the ramp), the last stage full, the CTA's end (stores
    done; the stream-only twins: their consumers' last release), the tail between the two, the slowest CTA's end,
    and the clock where the build measured it. Beside them, the same build without stamps as the record times it
    (graph replay, us) where the run timed it, and bound_us."""
    r = next((x for x in tl["runs"] if x["commit"] == run), None)
    if r is None:
        raise KeyError(f"no timeline run at commit {run!r}")
    rows = []
    for name, b in r["builds"].items():
        end = b.get("span", b["loop_end"])
        plain = name.replace("_prof", "")
        unordered = plain.removesuffix("_xfirst").removesuffix("_xlast")  # the twins were timed without the suffix
        timed = r["times"].get(plain, r["times"].get(unordered, {})).get("median_us")
        rows.append({"commit": run, "M": r["M"], "build": name, "stage 0 full": b["ramp"],
                     "last stage full": b["last_full"], "CTA end": end, "tail": round(end - b["last_full"], 1),
                     "slowest CTA end": b.get("span_max", b["loop_end_max"]), "GHz": b.get("ghz"),
                     "timed us (no stamps)": timed, "bound us": bound_us})
    return rows


def fig_v9_stage_arrivals(tl: dict, run: str, builds: tuple[str, ...] = ()) -> go.Figure:
    """When each ring stage was full (median over CTAs, SM cycles from the CTA's start) per stamped build of one
    timeline run (builds: names containing one of these; default all): the slope is the stage rate, the first point
    the ramp."""
    r = next((x for x in tl["runs"] if x["commit"] == run), None)
    if r is None:
        raise KeyError(f"no timeline run at commit {run!r}")
    fig = go.Figure()
    for name, b in r["builds"].items():
        if builds and not any(s in name for s in builds):
            continue
        st = [s["stage"] for s in b["stages"]]
        full = [s["full"] for s in b["stages"]]
        fig.add_trace(go.Scatter(x=st, y=full, mode="lines+markers", name=name))
    fig.update_layout(title=f"v9p: when each stage is full (M = {r['M']}, commit {run})", xaxis_title="ring stage",
                      yaxis_title="SM cycles from the CTA's start (median over CTAs)")
    return fig
