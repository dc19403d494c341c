"""Plotly figure builders shared by notebooks and reports (pure functions: data in, go.Figure out).

`setup()` sets the renderer so figures survive papermill and nbconvert's HTML export offline:
"plotly_mimetype+notebook" stores both the JupyterLab mimetype and an HTML copy with plotly.js inlined.
Technique-specific figures live in `workbench/viz/<technique>.py`.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE = "plotly_white"
COLORS = {"baseline": "#7f7f7f", "optimized": "#d62728", "bound": "#2ca02c", "other": "#1f77b4"}


def setup(renderer: str = "plotly_mimetype+notebook") -> None:
    """Call once at the top of every notebook."""
    pio.renderers.default = renderer
    pio.templates.default = TEMPLATE


def variant_bars(record: dict, case_names: list[str] | None = None, title: str | None = None) -> go.Figure:
    """Grouped bars: median time of every variant per case, with p20-p80 error bars and the bound."""
    cases = [c for c in record["cases"] if case_names is None or c["name"] in case_names]
    variants: list[str] = []
    for c in cases:
        for v in c["variants"]:
            if v not in variants:
                variants.append(v)
    fig = go.Figure()
    x = [c["name"] for c in cases]
    for v in variants:
        med = [c["variants"].get(v, {}).get("median_us") for c in cases]
        lo = [(m - c["variants"][v]["p20_us"]) if m is not None else None for m, c in zip(med, cases)]
        hi = [(c["variants"][v]["p80_us"] - m) if m is not None else None for m, c in zip(med, cases)]
        role = ("baseline" if all(c["baseline"] == v for c in cases)
                else "optimized" if all(c["optimized"] == v for c in cases) else None)
        fig.add_bar(name=v, x=x, y=med, error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
                    marker_color=COLORS.get(role) if role else None,
                    hovertemplate="%{x}<br>" + v + ": %{y:.2f} us<extra></extra>")
    fig.add_scatter(name="bound", x=x, y=[c["bound_us"] for c in cases], mode="markers",
                    marker=dict(symbol="line-ew-open", size=40, color=COLORS["bound"], line=dict(width=3)),
                    hovertemplate="%{x}<br>bound: %{y:.2f} us<extra></extra>")
    fig.update_layout(barmode="group", title=title or f"{record['technique']}: time per variant vs bound",
                      yaxis_title="time (us, median; bars p20-p80)", legend_title="variant")
    return fig


def speedup_table(record: dict) -> list[dict]:
    """Rows of case, baseline, optimized, speedup and % of bound (for display as a table)."""
    rows = []
    for c in record["cases"]:
        b, o = c["variants"][c["baseline"]]["median_us"], c["variants"][c["optimized"]]["median_us"]
        rows.append({"case": c["name"], "baseline": f"{c['baseline']} {b:.1f} us",
                     "optimized": f"{c['optimized']} {o:.1f} us", "speedup": round(b / o, 2),
                     "bound_us": round(c["bound_us"], 1),
                     "optimized % of bound": round(100 * c["bound_us"] / o, 1) if c["bound_us"] else None,
                     "validated": c["validation"].get("passed")})
    return rows


def table(rows: list[dict], title: str | None = None) -> go.Figure:
    """A plotly table from a list of dicts (same keys)."""
    if not rows:
        fig = go.Figure()
        fig.add_annotation(text="(no rows)", showarrow=False)
        return fig
    keys = list(rows[0])
    fig = go.Figure(go.Table(header=dict(values=keys, align="left", fill_color="#eeeeee"),
                             cells=dict(values=[[r.get(k) for r in rows] for k in keys], align="left")))
    # Rows wrap when a cell holds long text: budget for two lines where any cell is long.
    line = 22
    heights = [line * (2 if any(len(str(v)) > 40 for v in r.values()) else 1) + 10 for r in rows]
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      height=70 + sum(heights))
    return fig


def roofline(copy_TBps: float, peaks: dict[str, float], points: list[dict] | None = None,
             datasheet: dict | None = None, title: str = "Roofline (measured ceilings)") -> go.Figure:
    """Log-log roofline: attainable TFLOP/s vs arithmetic intensity (FLOP/byte).

    peaks: {"bf16": TFLOP/s, "fp8": TFLOP/s} (measured); datasheet: same keys plus hbm_TBps, drawn dashed;
    points: [{"name", "intensity", "tflops"}] markers for kernels.
    """
    import numpy as np

    ai = np.logspace(-1, 4, 200)
    fig = go.Figure()
    for name, peak in peaks.items():
        fig.add_scatter(x=ai, y=np.minimum(peak, ai * copy_TBps), name=f"{name} measured ({peak:.0f} TFLOP/s, "
                        f"{copy_TBps:.2f} TB/s)", mode="lines")
    if datasheet:
        for name in peaks:
            key = f"{name}_TFLOPs"
            if key in datasheet:
                fig.add_scatter(x=ai, y=np.minimum(datasheet[key], ai * datasheet["hbm_TBps"]),
                                name=f"{name} datasheet", mode="lines", line=dict(dash="dash"))
    for p in points or []:
        fig.add_scatter(x=[p["intensity"]], y=[p["tflops"]], name=p["name"], mode="markers",
                        marker=dict(size=10))
    fig.update_layout(title=title, xaxis_type="log", yaxis_type="log", xaxis_title="arithmetic intensity (FLOP/byte)",
                      yaxis_title="TFLOP/s")
    return fig


def times_vs_bound_rows(record: dict, bounds_key: str | None = None, validated_label: str = "validated") -> list[dict]:
    """One row per case: each variant's median time and its multiple of the bound (for `table`).

    bounds_key: a case `params` entry holding per-variant bounds (variants that move different bytes,
    e.g. a fused NVFP4 path); variants missing from it use the case's `bound_us`.
    """
    rows = []
    for c in record["cases"]:
        per_variant = c["params"].get(bounds_key, {}) if bounds_key else {}
        row = {"case": c["name"], "bound_us": round(c["bound_us"], 1)}
        for v, tm in c["variants"].items():
            b = per_variant.get(v, c["bound_us"])
            row[v] = f"{tm['median_us']:.1f} us ({tm['median_us'] / b:.2f}x)" if b else f"{tm['median_us']:.1f} us"
        row[validated_label] = c["validation"]["passed"]
        rows.append(row)
    return rows
