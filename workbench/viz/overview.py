"""Figures of the overview notebook: the layer's weight bytes and the mission status table."""

from __future__ import annotations

import plotly.graph_objects as go

from ..model import ModelDims


def weight_bytes_per_layer(d: ModelDims, tokens: int = 32, ep: int = 32) -> list[dict]:
    """Weight bytes one attention-DP rank reads per decode step and layer, bf16 vs NVFP4 (e2m1 + e4m3/16).

    Routed experts: a rank holds num_experts/ep experts and, with `tokens` tokens spread over the EP
    group, touches at most all of them (the upper bound is used here).
    """
    w = d.weight_shapes()
    experts_local = d.num_experts // ep
    rows = []
    for name, (n, k) in w.items():
        if name == "lm_head":
            continue
        count = experts_local if name.startswith("expert_") else 1
        bf16 = 2 * n * k * count
        nvfp4 = (n * k // 2 + n * k // d.nvfp4_block) * count
        rows.append({"weight": name, "shape": f"{n} x {k}" + (f" x {count}" if count > 1 else ""),
                     "bf16_MB": bf16 / 1e6, "nvfp4_MB": nvfp4 / 1e6})
    return rows


def fig_weight_bytes(rows: list[dict], copy_TBps: float | None = None) -> go.Figure:
    names = [r["weight"] for r in rows]
    fig = go.Figure()
    fig.add_bar(name="bf16", x=names, y=[r["bf16_MB"] for r in rows])
    fig.add_bar(name="NVFP4 (e2m1 + e4m3 per 16)", x=names, y=[r["nvfp4_MB"] for r in rows])
    title = "Weight bytes read per layer and decode step (one attention-DP rank)"
    if copy_TBps:
        title += f"; at {copy_TBps:.2f} TB/s, 100 MB takes {100e6 / (copy_TBps * 1e12) * 1e6:.0f} us"
    fig.update_layout(barmode="group", title=title, yaxis_title="MB", yaxis_type="log")
    return fig
