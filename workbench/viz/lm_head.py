"""Figures of the TP LM head (pure functions: data in, go.Figure out)."""

from __future__ import annotations

import plotly.graph_objects as go

from . import COLORS

VARIANT_COLORS = {"full_1gpu": COLORS["baseline"], "nccl_tp": COLORS["other"], "nccl_tp_eager": "#9ecae1",
                  "own_tp": COLORS["optimized"], "nccl": COLORS["other"], "own": COLORS["optimized"]}


def fig_data_movement(tokens: int, tp: int, vocab: int, hidden: int, cost: dict | None = None) -> go.Figure:
    """Block diagram of one draft step on a TP group: shapes and bytes of every movement, per rank."""
    width = -(-vocab // tp)
    steps = [
        ("X_r", f"[{tokens}, {hidden}] bf16", "own hidden rows (zero-padded)"),
        ("all-gather", f"{(tp - 1) * tokens * hidden * 2 / 1e3:.0f} KB in per rank", "NVLink peer writes or NCCL"),
        ("X", f"[{tp * tokens}, {hidden}]", "the group's rows"),
        ("GEMM", f"W_r [{width}, {hidden}]: {width * hidden * 2 / 1e6:.0f} MB read", "the only big traffic (HBM)"),
        ("local max", f"[{tp * tokens}] (value, id)", "first max in the slice"),
        ("exchange", f"{(tp - 1) * tokens * 8} B in per rank", "pairs of our rows"),
        ("pick", f"ids [{tokens}] int32", "largest value, lowest rank on ties"),
    ]
    fig = go.Figure()
    for i, (name, shape, note) in enumerate(steps):
        x0 = i * 1.5
        comm = name in ("all-gather", "exchange")
        fig.add_shape(type="rect", x0=x0, x1=x0 + 1.2, y0=0, y1=1, line=dict(width=1),
                      fillcolor="#fde0dd" if comm else ("#fee8c8" if name == "GEMM" else "#e5f5e0"))
        fig.add_annotation(x=x0 + 0.6, y=0.72, text=f"<b>{name}</b>", showarrow=False)
        fig.add_annotation(x=x0 + 0.6, y=0.45, text=shape, showarrow=False, font=dict(size=10))
        fig.add_annotation(x=x0 + 0.6, y=0.18, text=note, showarrow=False, font=dict(size=9, color="#555"))
        if i:
            fig.add_annotation(x=x0, y=0.5, ax=x0 - 0.3, ay=0.5, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=2, text="")
    fig.update_xaxes(visible=False, range=[-0.2, len(steps) * 1.5])
    fig.update_yaxes(visible=False, range=[-0.1, 1.1])
    full = vocab * hidden * 2 / 1e6
    fig.update_layout(title=f"One MTP draft step, TP{tp}, {tokens} tokens per rank: each rank reads "
                            f"{width * hidden * 2 / 1e6:.0f} MB of the LM head instead of {full:.0f} MB",
                      height=260, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def fig_bytes_vs_tp(cost_by_tp: dict[int, dict]) -> go.Figure:
    """Bytes per rank per draft step vs TP size: weight slice (HBM) and received hidden rows (NVLink)."""
    tps = sorted(cost_by_tp)
    fig = go.Figure()
    fig.add_bar(name="LM-head weight read (HBM)", x=[f"TP{t}" for t in tps],
                y=[cost_by_tp[t]["weight_bytes"] / 1e6 for t in tps])
    fig.add_bar(name="hidden rows received (NVLink)", x=[f"TP{t}" for t in tps],
                y=[cost_by_tp[t]["allgather_bytes_in"] / 1e6 for t in tps])
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="MB per rank per step",
                      title="Bytes per rank: the weight shrinks N-fold, the all-gather stays tiny")
    return fig


def fig_roofline(roofline: dict, device: str = "") -> go.Figure:
    """Full-vocabulary head on one GPU: time vs tokens (log-log) with its bound and the crossovers."""
    pts = roofline["points"]
    x = [p["tokens"] for p in pts]
    fig = go.Figure()
    fig.add_scatter(x=x, y=[p["gemm_us"] for p in pts], name="GEMM (fp32 logits)", mode="lines+markers")
    fig.add_scatter(x=x, y=[p["head_us"] for p in pts], name="GEMM + argmax", mode="lines+markers",
                    line=dict(color=COLORS["optimized"]))
    fig.add_scatter(x=x, y=[p["bound_us"] for p in pts], name="bound (bytes/BW, flops/peak)", mode="lines",
                    line=dict(color=COLORS["bound"], dash="dash"))
    for key, label, dash in (("model_crossover_tokens", "model crossover", "dot"),
                             ("measured_crossover_tokens", "measured crossover", "dashdot")):
        if roofline.get(key):
            fig.add_vline(x=roofline[key], line=dict(dash=dash, color="#555"),
                          annotation_text=f"{label}: {roofline[key]:.0f} tokens")
    fig.update_layout(xaxis_type="log", yaxis_type="log", xaxis_title="tokens (rows of X)", yaxis_title="time (us)",
                      title=f"LM head on one GPU: flat (weight-bound) until the crossover {device}")
    return fig


def _tp_cases(record: dict) -> list[dict]:
    return [c for c in record["cases"] if c["name"].startswith("tokens")]


def fig_time_vs_tokens(record: dict) -> go.Figure:
    """Median time of every LM-head variant vs tokens per rank, one line per (variant, TP size)."""
    fig = go.Figure()
    cases = _tp_cases(record)
    for tp in sorted({c["params"]["tp"] for c in cases}):
        sub = sorted((c for c in cases if c["params"]["tp"] == tp), key=lambda c: c["params"]["tokens_per_rank"])
        for v in ("full_1gpu", "nccl_tp", "nccl_tp_eager", "own_tp"):
            if v == "full_1gpu" and tp != min(c["params"]["tp"] for c in cases):
                continue  # the one-GPU baseline does not depend on the TP size
            pts = [(c["params"]["tokens_per_rank"], c["variants"][v]["median_us"]) for c in sub if v in c["variants"]]
            if pts:
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                name=v if v == "full_1gpu" else f"{v} TP{tp}", line=dict(color=VARIANT_COLORS[v],
                                dash="solid" if tp == max(c['params']['tp'] for c in cases) else "dot"))
        fig.add_scatter(x=[c["params"]["tokens_per_rank"] for c in sub], y=[c["bound_us"] for c in sub],
                        mode="lines", name=f"bound TP{tp}", line=dict(color=COLORS["bound"], dash="dash"))
    fig.update_layout(xaxis_type="log", xaxis_title="tokens per rank", yaxis_title="time per draft step (us)",
                      title="MTP LM head: one GPU vs TP (NCCL vs peer-buffer collectives)")
    return fig


def fig_speedup(record: dict) -> go.Figure:
    """Speedup of nccl_tp and own_tp over the full-vocabulary head, per case."""
    cases = _tp_cases(record)
    fig = go.Figure()
    for v in ("nccl_tp", "own_tp"):
        fig.add_bar(name=v, x=[c["name"] for c in cases], marker_color=VARIANT_COLORS[v],
                    y=[c["variants"]["full_1gpu"]["median_us"] / c["variants"][v]["median_us"] for c in cases])
    fig.add_hline(y=1.0, line=dict(color="#555", dash="dot"), annotation_text="one GPU")
    fig.update_layout(barmode="group", yaxis_title="speedup over full_1gpu", title="What TP buys, per collective")
    return fig


def fig_allgather(record: dict) -> go.Figure:
    """All-gather of B x 7168 bf16: NCCL vs peer-buffer kernel (and the NVLink bound)."""
    cases = sorted((c for c in record["cases"] if c["name"].startswith("allgather")),
                   key=lambda c: (c["params"]["gpus"], c["params"]["tokens_per_rank"]))
    x = [c["name"].replace("allgather_", "") for c in cases]
    fig = go.Figure()
    for v in ("nccl", "own"):
        fig.add_bar(name=v, x=x, y=[c["variants"][v]["median_us"] for c in cases], marker_color=VARIANT_COLORS[v])
    fig.add_scatter(name="NVLink bound", x=x, y=[c["bound_us"] for c in cases], mode="markers",
                    marker=dict(symbol="line-ew-open", size=30, color=COLORS["bound"], line=dict(width=3)))
    fig.update_layout(barmode="group", yaxis_title="time (us)", title="All-gather of the hidden rows")
    return fig
