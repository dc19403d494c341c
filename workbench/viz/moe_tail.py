"""Figures for technique 8 (MoE tail fusions): bytes per kernel, time against the bound over T, speedups,
and the per-expert 128x4 swizzled scale layout that expand writes.

Pure functions: data (bytes tables from `moe_tail.reduce_bytes`/`expand_bytes`, a record, or a layout map
from `swizzle_map`) in, go.Figure out.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import COLORS

VARIANT_COLORS = {
    "eager": COLORS["baseline"], "torch_compile": "#ff7f0e", "optimized": COLORS["optimized"],
    "dequant_then_reduce": "#9467bd", "optimized_nvfp4_v1": "#8c564b", "optimized_nvfp4": "#e377c2",
    "unfused": COLORS["baseline"],
}
BOUND_LABELS = {"eager": "bound of eager's bytes", "torch_compile": "bound, fused bf16",
                "torch_compile_static": "bound, fused bf16", "optimized": "bound, fused bf16",
                "dequant_then_reduce": "bound of dequant + reduce bytes", "optimized_nvfp4_v1": "bound, fused NVFP4",
                "optimized_nvfp4": "bound, fused NVFP4", "unfused": "bound of unfused bytes"}
KERNEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


def fig_bytes(tables: dict[str, dict[str, list[tuple[str, int]]]], title: str = "Bytes through HBM per variant") -> go.Figure:
    """Stacked bars: MB each variant moves, split by kernel; one panel per table.

    tables: {panel title: {variant: [(kernel, bytes), ...]}} (e.g. reduce_bytes(T) and expand_bytes(...)).
    """
    fig = make_subplots(rows=1, cols=len(tables), subplot_titles=list(tables), horizontal_spacing=0.12)
    for col, table in enumerate(tables.values(), start=1):
        variants = list(table)
        depth = max(len(parts) for parts in table.values())
        for i in range(depth):
            ys = [table[v][i][1] / 1e6 if i < len(table[v]) else 0 for v in variants]
            names = [table[v][i][0] if i < len(table[v]) else "" for v in variants]
            fig.add_bar(x=variants, y=ys, text=names, textposition="inside", marker_color=KERNEL_COLORS[i % 5],
                        name=f"kernel {i + 1}", legendgroup=f"k{i}", showlegend=col == 1, row=1, col=col,
                        hovertemplate="%{x}<br>%{text}: %{y:.2f} MB<extra></extra>")
    fig.update_layout(barmode="stack", title=title, legend_title="kernel of the variant")
    fig.update_yaxes(title_text="MB read + written", col=1)
    return fig


def _cases(record: dict, prefix: str) -> list[dict]:
    cs = [c for c in record["cases"] if c["name"].startswith(prefix)]
    return sorted(cs, key=lambda c: c["params"]["tokens"])


def fig_time_vs_tokens(record: dict, prefix: str = "reduce_", title: str | None = None) -> go.Figure:
    """Median time of every variant against T (log-log, p20-p80 bars), with each variant's bound dashed."""
    cases = _cases(record, prefix)
    fig = go.Figure()
    if not cases:
        fig.add_annotation(text="(no cases)", showarrow=False)
        return fig
    T = [c["params"]["tokens"] for c in cases]
    variants = list(cases[0]["variants"])
    for v in variants:
        med = [c["variants"][v]["median_us"] for c in cases]
        fig.add_scatter(x=T, y=med, name=v, mode="lines+markers", line=dict(color=VARIANT_COLORS.get(v)),
                        error_y=dict(type="data", symmetric=False,
                                     array=[c["variants"][v]["p80_us"] - m for c, m in zip(cases, med)],
                                     arrayminus=[m - c["variants"][v]["p20_us"] for c, m in zip(cases, med)]),
                        hovertemplate="T=%{x}<br>" + v + ": %{y:.2f} us<extra></extra>")
    seen = set()
    for v in variants:  # bounds differ by input format: draw each distinct one once
        b = [c["params"].get("bounds_us", {}).get(v, c["bound_us"]) for c in cases]
        key = tuple(round(x, 2) for x in b)
        if key in seen:
            continue
        seen.add(key)
        label = BOUND_LABELS.get(v, f"bound of {v}'s bytes")
        fig.add_scatter(x=T, y=b, name=label, mode="lines",
                        line=dict(dash="dash", color=VARIANT_COLORS.get(v, COLORS["bound"])),
                        hovertemplate="T=%{x}<br>bound: %{y:.2f} us<extra></extra>")
    fig.update_layout(title=title or f"{prefix.rstrip('_')}: time vs tokens ({record['device']['name']})",
                      xaxis_type="log", yaxis_type="log", xaxis_title="tokens T", yaxis_title="time (us)")
    return fig


def fig_fraction_of_bound(record: dict, prefix: str = "reduce_") -> go.Figure:
    """Bound / time (100% = at the bound) of every variant per case, each against its own bytes."""
    cases = _cases(record, prefix)
    fig = go.Figure()
    for v in (list(cases[0]["variants"]) if cases else []):
        pct = [100.0 * c["params"].get("bounds_us", {}).get(v, c["bound_us"]) / c["variants"][v]["median_us"]
               for c in cases]
        fig.add_bar(x=[f"T={c['params']['tokens']}" for c in cases], y=pct, name=v,
                    marker_color=VARIANT_COLORS.get(v), hovertemplate="%{x}<br>" + v + ": %{y:.0f}%<extra></extra>")
    fig.add_hline(y=100, line_dash="dash", line_color=COLORS["bound"])
    fig.update_layout(barmode="group", title=f"{prefix.rstrip('_')}: % of each variant's own bound",
                      yaxis_title="bound / median time (%)")
    return fig


def fig_speedups(record: dict, pairs: dict[str, tuple[str, str]]) -> go.Figure:
    """Speedup bars per case: pairs = {label: (slower variant, faster variant)} over all cases that have both."""
    fig = go.Figure()
    for label, (a, b) in pairs.items():
        cs = [c for c in record["cases"] if a in c["variants"] and b in c["variants"]]
        fig.add_bar(x=[c["name"] for c in cs],
                    y=[c["variants"][a]["median_us"] / c["variants"][b]["median_us"] for c in cs], name=label,
                    hovertemplate="%{x}<br>" + label + ": %{y:.2f}x<extra></extra>")
    fig.add_hline(y=1, line_color="#444")
    fig.update_layout(barmode="group", title="Speedups (median time ratio)", yaxis_title="x faster")
    return fig


def swizzle_map(counts: list[int], kb: int = 4) -> dict:
    """Where each byte of the per-expert swizzled scale buffer comes from, for a small example.

    counts: rows per expert; kb: scale columns (pad to 4). Returns {"expert", "row", "col"}: lists over
    the buffer's bytes (-1 where a byte is padding or a gap), plus "starts" (region start rows) and
    "kbp". Pure Python mirror of the layout of techniques.md 1.4 with TRT-LLM's region formula.
    """
    kbp = (kb + 3) // 4 * 4
    offs = [0]
    for c in counts:
        offs.append(offs[-1] + c)
    starts = [(o + 127 * e + 127) // 128 * 128 for e, o in enumerate(offs)]
    n = starts[-1] * kbp
    expert, row, col = [-1] * n, [-1] * n, [-1] * n
    for e, c in enumerate(counts):
        for j in range(c):
            m = starts[e] + j
            for k in range(kb):
                off = ((m // 128) * (kbp // 4) + k // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + k % 4
                expert[off], row[off], col[off] = e, j, k
    return {"expert": expert, "row": row, "col": col, "starts": starts, "kbp": kbp}


def fig_swizzle_map(m: dict, title: str | None = None) -> go.Figure:
    """Heatmap of a swizzle_map: one line per 16-byte chunk (32 per 512-byte tile), 16 bytes across.

    Colour = the expert's local row held by the byte (blank = zero padding or a gap between regions);
    a chunk holds 4 scale columns of the 4 rows r, r+32, r+64, r+96 of its tile.
    """
    rows = len(m["row"]) // 16
    z = [[m["row"][16 * i + j] if m["row"][16 * i + j] >= 0 else None for j in range(16)] for i in range(rows)]
    text = [[(f"expert {m['expert'][16 * i + j]}, row {m['row'][16 * i + j]}, scale col {m['col'][16 * i + j]}"
              if m["row"][16 * i + j] >= 0 else "padding / gap (0)") for j in range(16)] for i in range(rows)]
    fig = go.Figure(go.Heatmap(z=z, text=text, hovertemplate="byte %{x} of chunk %{y}<br>%{text}<extra></extra>",
                               colorscale="Viridis", colorbar=dict(title="local row")))
    for t in range(1, rows // 32):
        fig.add_hline(y=32 * t - 0.5, line_color="white", line_width=2)
    fig.update_layout(title=title or "Per-expert 128x4 swizzled scales (each band = one 512-byte tile)",
                      xaxis_title="byte within the 16-byte chunk (4 rows x 4 scale columns)",
                      yaxis_title="16-byte chunk", yaxis_autorange="reversed", height=max(400, 4 * rows))
    return fig
