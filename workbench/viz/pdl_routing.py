"""Figures for technique 6 (PDL routing chain): the timeline Gantt, latency per case, boundary gaps.

Pure functions: data (a record, or timelines from `pdl_routing.timeline_for_plot`) in, go.Figure out.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import COLORS

KERNEL_LABELS = {
    "route_noaux_tc": "route (noaux_tc)",
    "count_and_indices": "count + indices",
    "cumsum_counts": "cumsum",
    "move_indices": "move indices",
    "memset_expert_ids": "memset expert ids",
}
VARIANT_COLORS = {"torch_ops": "#7f7f7f", "torch_ops_graph": "#bcbd22", "pdl_off": "#1f77b4",
                  "pdl_on": "#d62728", "graph_pdl_off": "#9467bd", "graph_pdl_on": "#ff7f0e"}
MODE_TITLES = {"pdl_off": "eager stream, PDL off", "pdl_on": "eager stream, PDL on",
               "graph_pdl_on": "CUDA graph, PDL on", "graph_pdl_off": "CUDA graph, PDL off"}


def fig_timeline(timelines: dict[str, list[dict]], title: str | None = None, per_block: bool = False) -> go.Figure:
    """Gantt of the chain, one panel per mode (e.g. PDL off / on), one row per kernel.

    timelines: {mode: [{"kernel", "entry_us", "waited_us", "exit_us"} per kernel]} in us from the chain's
    first block entry. Light bar: blocks resident but held in griddepcontrol.wait (first entry to last
    wait-return); dark bar: running (first wait-return to last exit). per_block=True draws every block.
    """
    modes = list(timelines)
    fig = make_subplots(rows=len(modes), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[MODE_TITLES.get(m, m) for m in modes])
    shown = set()
    for row, mode in enumerate(modes, start=1):
        for k in timelines[mode]:
            label = KERNEL_LABELS.get(k["kernel"], k["kernel"])
            if per_block:
                spans = list(zip(k["entry_us"], k["waited_us"], k["exit_us"]))
            else:
                spans = [(min(k["entry_us"]), max(k["waited_us"]), max(k["exit_us"]))]
            for entry, waited, end in spans:
                wait_len = max(0.0, waited - entry)
                run_start = min(k["waited_us"]) if not per_block else waited
                for name, base, length, color in (
                        ("resident, waiting (griddepcontrol.wait)", entry, wait_len, "#f4b6b6"),
                        ("running", run_start, max(0.0, end - run_start), COLORS["optimized"] if "on" in mode
                         else COLORS["other"])):
                    if length <= 0:
                        continue
                    legend_key = name + ("on" if "on" in mode else "off")
                    fig.add_bar(y=[label], x=[length], base=[base], orientation="h", marker_color=color,
                                opacity=0.85, name=name + (" (PDL on)" if "on" in mode and name == "running" else ""),
                                legendgroup=name, showlegend=legend_key not in shown, row=row, col=1,
                                hovertemplate=f"{label}<br>{name}<br>%{{base:.2f}} - %{{x:.2f}} us long"
                                              "<extra></extra>")
                    shown.add(legend_key)
        end_us = max(max(k["exit_us"]) for k in timelines[mode])
        fig.add_vline(x=end_us, line_dash="dot", line_color="#444", row=row, col=1,
                      annotation_text=f"chain ends {end_us:.1f} us", annotation_position="top left")
    order = [KERNEL_LABELS.get(k["kernel"], k["kernel"]) for k in next(iter(timelines.values()))]
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1])
    fig.update_xaxes(title_text="time from the first block's entry (us, %globaltimer)", row=len(modes), col=1)
    fig.update_layout(barmode="overlay", height=220 * len(modes) + 80,
                      title=title or "The routing/prepare chain: when each grid's blocks became resident and ran")
    return fig


def fig_latency(record: dict, variants: list[str] | None = None, log_y: bool = True) -> go.Figure:
    """Median chain latency (p20-p80 bars) vs tokens T, one panel per EP size, one line per variant."""
    cases = record["cases"]
    eps = sorted({c["params"]["E"] for c in cases})
    fig = make_subplots(rows=1, cols=len(eps), shared_yaxes=True, subplot_titles=[f"E = {e}" for e in eps])
    variants = variants or list(dict.fromkeys(v for c in cases for v in c["variants"]))
    for col, ep in enumerate(eps, start=1):
        cs = sorted((c for c in cases if c["params"]["E"] == ep), key=lambda c: c["params"]["T"])
        xs = [c["params"]["T"] for c in cs]
        for v in variants:
            med = [c["variants"].get(v, {}).get("median_us") for c in cs]
            if all(m is None for m in med):
                continue
            lo = [m - c["variants"][v]["p20_us"] if m is not None else None for m, c in zip(med, cs)]
            hi = [c["variants"][v]["p80_us"] - m if m is not None else None for m, c in zip(med, cs)]
            fig.add_scatter(x=xs, y=med, name=v, mode="lines+markers", legendgroup=v, showlegend=col == 1,
                            line=dict(color=VARIANT_COLORS.get(v)),
                            error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
                            row=1, col=col, hovertemplate=f"{v}<br>T=%{{x}}: %{{y:.2f}} us<extra></extra>")
        fig.add_scatter(x=xs, y=[c["bound_us"] for c in cs], name="bound (sum of kernel bodies)", mode="lines",
                        line=dict(color=COLORS["bound"], dash="dash"), legendgroup="bound", showlegend=col == 1,
                        row=1, col=col)
    fig.update_xaxes(type="log", title_text="tokens T", tickvals=[32, 128, 256, 1024])
    fig.update_yaxes(type="log" if log_y else "linear", title_text="chain latency (us, median)", col=1)
    fig.update_layout(title="Routing + prepare chain latency per variant (one chain between two events, GPU fed)",
                      height=450)
    return fig


def fig_pdl_saving(record: dict) -> go.Figure:
    """Bars: % of chain latency PDL removes, eager stream and CUDA graph, per case."""
    names = [c["name"] for c in record["cases"]]
    fig = go.Figure()
    for off, on, label, color in (("pdl_off", "pdl_on", "eager stream", VARIANT_COLORS["pdl_on"]),
                                  ("graph_pdl_off", "graph_pdl_on", "CUDA graph", VARIANT_COLORS["graph_pdl_on"])):
        y = [100 * (1 - c["variants"][on]["median_us"] / c["variants"][off]["median_us"]) for c in record["cases"]]
        fig.add_bar(x=names, y=y, name=label, marker_color=color,
                    hovertemplate="%{x}<br>" + label + ": %{y:.1f}% less<extra></extra>")
    fig.add_hline(y=20, line_dash="dot", annotation_text="issue target (eager, T <= 256): 20%")
    fig.update_layout(barmode="group", title="Latency PDL removes from the chain",
                      yaxis_title="% lower latency with PDL", height=400)
    return fig


def fig_boundary_gaps(spans: dict[str, dict]) -> go.Figure:
    """Per kernel boundary: next grid's first entry minus previous grid's last exit (negative = overlap)."""
    from ..techniques.pdl_routing import KERNELS

    labels = [f"{KERNEL_LABELS[a]} -> {KERNEL_LABELS[b]}" for a, b in zip(KERNELS, KERNELS[1:])]
    fig = go.Figure()
    for mode, s in spans.items():
        fig.add_bar(x=labels, y=s["gap_us"], name=MODE_TITLES.get(mode, mode))
    fig.add_hline(y=0, line_color="#444")
    fig.update_layout(barmode="group", title="Gap at each kernel boundary (negative: the next grid was already "
                      "resident)", yaxis_title="us", height=400)
    return fig
