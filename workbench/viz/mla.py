"""Figures of the MLA context techniques: k assembly (knope_copy) and separate-Q/K/V attention.

Pure functions: a result record (or plain numbers) in, a plotly Figure out.
"""

from __future__ import annotations

import plotly.graph_objects as go

from . import COLORS

VARIANT_COLORS = {
    "eager_cat": COLORS["baseline"], "eager_copy": "#9467bd", "torch_compile": "#1f77b4",
    "optimized": COLORS["optimized"],
    "assemble_then_cudnn": COLORS["baseline"], "assemble_then_own": "#ff7f0e", "own_separate": COLORS["optimized"],
    "cudnn_only": "#1f77b4", "assembly_only": "#8c564b",
}


def fig_layout(num_heads: int = 4, nope: int = 4, rope: int = 2, v: int = 4) -> go.Figure:
    """One token's row of kv (per head [k_nope | v]) and of the assembled k (per head [k_nope | k_pe]),
    in 8-element vectors: which source each vector of k comes from."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]

    def cell(x, y, color, text, opacity=1.0):
        fig.add_shape(type="rect", x0=x, x1=x + 1, y0=y, y1=y + 0.8, fillcolor=color, opacity=opacity,
                      line=dict(color="white"))
        fig.add_annotation(x=x + 0.5, y=y + 0.4, text=text, showarrow=False, font=dict(size=9, color="white"))

    def row(y, second_len, second_color, second_label, second_opacity):
        """Per head: `nope` vectors of k_nope, then `second_len` vectors of the second part."""
        x = 0
        for h in range(num_heads):
            color = palette[h % len(palette)]
            for _ in range(nope):
                cell(x, y, color, f"n{h}")
                x += 1
            for _ in range(second_len):
                cell(x, y, second_color or color, second_label.format(h=h), opacity=second_opacity)
                x += 1

    row(2, v, None, "v{h}", 0.35)  # kv: [k_nope | v] per head
    for j in range(rope):
        cell(j, 1, "#d62728", "pe")
    row(0, rope, "#d62728", "pe", 1.0)  # k: [k_nope | k_pe] per head
    fig.update_xaxes(visible=False, range=[-0.5, num_heads * (nope + v) + 0.5])
    fig.update_yaxes(tickvals=[0.4, 1.4, 2.4], ticktext=["k (written)", "k_pe (read once)", "kv (read n only)"],
                     range=[-0.2, 3])
    fig.update_layout(title="One token: k = [k_nope | k_pe] per head, built from kv and k_pe "
                            "(each box = one 16-byte vector)", height=260, showlegend=False,
                      margin=dict(l=120, r=10, t=40, b=10))
    return fig


def fig_times_vs_bound(record: dict, variants: list[str] | None = None, title: str | None = None) -> go.Figure:
    """Time of each variant as a multiple of the case's bound (1.0 = at the bound), per case."""
    cases = record["cases"]
    names = variants or list(dict.fromkeys(v for c in cases for v in c["variants"]))
    fig = go.Figure()
    x = [c["name"] for c in cases]
    for v in names:
        y = [c["variants"][v]["median_us"] / c["bound_us"] if v in c["variants"] and c["bound_us"] else None
             for c in cases]
        fig.add_bar(name=v, x=x, y=y, marker_color=VARIANT_COLORS.get(v),
                    hovertemplate="%{x}<br>" + v + ": %{y:.2f}x bound<extra></extra>")
    fig.add_hline(y=1.0, line_dash="dash", line_color=COLORS["bound"], annotation_text="bound")
    fig.update_layout(barmode="group", title=title or f"{record['technique']}: time / bound (lower is better)",
                      yaxis_title="median time / bound", legend_title="variant")
    return fig


def fig_tflops_vs_seqlen(record: dict, variants: list[str] | None = None, peak_tflops: float | None = None,
                         marks: dict[str, float] | None = None) -> go.Figure:
    """Attention TFLOP/s (causal flops from the record's params) against the sequence length, per
    pipeline; the measured bf16 matmul peak and reference marks (e.g. a target) as lines."""
    cases = sorted(record["cases"], key=lambda c: c["params"]["tokens"])
    names = variants or [v for v in dict.fromkeys(v for c in cases for v in c["variants"]) if v != "assembly_only"]
    fig = go.Figure()
    s = [c["params"]["tokens"] for c in cases]
    for v in names:
        y = [c["params"]["flops"] / c["variants"][v]["median_us"] / 1e6 if v in c["variants"] else None
             for c in cases]
        fig.add_scatter(name=v, x=s, y=y, mode="lines+markers", line=dict(color=VARIANT_COLORS.get(v)),
                        hovertemplate="S=%{x}<br>" + v + ": %{y:.0f} TFLOP/s<extra></extra>")
    if peak_tflops:
        fig.add_hline(y=peak_tflops, line_dash="dash", line_color=COLORS["bound"],
                      annotation_text=f"bf16 matmul peak (measured) {peak_tflops:.0f}")
    for label, val in (marks or {}).items():
        fig.add_hline(y=val, line_dash="dot", line_color="#999999", annotation_text=label)
    fig.update_layout(title="MLA context attention: TFLOP/s vs sequence length (causal, H=128, end to end)",
                      xaxis_title="sequence length S (tokens)", xaxis_type="log", yaxis_title="TFLOP/s",
                      legend_title="pipeline")
    return fig


def fig_pipeline_breakdown(record: dict) -> go.Figure:
    """Stacked: assembly time + attention time of the assembled pipelines next to the no-copy kernel."""
    cases = record["cases"]
    x = [c["name"] for c in cases]
    fig = go.Figure()

    def get(c, v):
        return c["variants"].get(v, {}).get("median_us")

    asm = [get(c, "assembly_only") for c in cases]
    fig.add_bar(name="assembly (k, v)", x=x, y=asm, marker_color=VARIANT_COLORS["assembly_only"], offsetgroup="a")
    fig.add_bar(name="cuDNN SDPA on assembled", x=x, y=[get(c, "cudnn_only") for c in cases], base=asm,
                marker_color=VARIANT_COLORS["cudnn_only"], offsetgroup="a")
    fig.add_bar(name="assemble then own kernel (end to end)", x=x, y=[get(c, "assemble_then_own") for c in cases],
                marker_color=VARIANT_COLORS["assemble_then_own"], offsetgroup="b")
    fig.add_bar(name="own kernel, separate Q/K/V", x=x, y=[get(c, "own_separate") for c in cases],
                marker_color=VARIANT_COLORS["own_separate"], offsetgroup="c")
    fig.update_layout(barmode="group", title="Where the time goes: assembly + attention vs no copy",
                      yaxis_title="time (us, median)", yaxis_type="log")
    return fig


def fig_config_sweep(sweep: dict, marks: dict[str, float] | None = None) -> go.Figure:
    """TFLOP/s of every kernel config of the record's sweep (round 1: all valid configs; round 2: the
    finalists, more samples), median with p20-p80 whiskers, fastest first; invalid or failed configs
    are listed with no bar."""
    rows = sweep["rows"]
    flops = sweep["flops"]

    def rate(r, key):
        return r[key]["TFLOPs"] if key in r else None

    rows = sorted(rows, key=lambda r: -(rate(r, "round1") or 0))
    names = [r["name"] for r in rows]
    fig = go.Figure()
    for key, color in (("round1", "#9ecae1"), ("round2", COLORS["optimized"])):
        y = [rate(r, key) for r in rows]
        lo = [rate(r, key) - flops / r[key]["p80_us"] / 1e6 if key in r else None for r in rows]
        hi = [flops / r[key]["p20_us"] / 1e6 - rate(r, key) if key in r else None for r in rows]
        fig.add_bar(name=key, y=names, x=y, orientation="h", marker_color=color,
                    error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
                    hovertemplate="%{y}<br>" + key + ": %{x:.0f} TFLOP/s<extra></extra>")
    if sweep.get("best"):
        fig.add_annotation(x=0, y=sweep["best"], xanchor="left", text="chosen", showarrow=False,
                           font=dict(color="white"))
    for label, val in (marks or {}).items():
        fig.add_vline(x=val, line_dash="dot", line_color="#999999", annotation_text=label)
    fig.update_layout(barmode="group", title=f"Kernel configs at {sweep.get('case')} on {sweep.get('device')}",
                      xaxis_title="TFLOP/s (median, p20-p80)", yaxis_autorange="reversed",
                      height=max(400, 24 * len(rows) + 120), legend_title="timing round")
    return fig
