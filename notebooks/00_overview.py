# %% [markdown]
# # 00 · Overview: the DeepSeek-R1 layer under wide expert parallelism
#
# What you will learn here:
# - the shapes of one DeepSeek-R1 decoder layer as an attention-DP / wide-EP rank sees them (all from
#   `workbench/model.py`), and where each of the ten optimizations acts;
# - the two ceilings of this GPU (copy bandwidth, matmul peak), measured, and what they imply through a
#   roofline: at decode sizes almost every kernel of the layer is memory-bound;
# - how every number in this workbench is produced: a kernel is validated, timed with CUDA events and
#   shown beside its bound; GPU runs are recorded in `data/results/` with card, date and commit, and
#   machines without a GPU show those records.
#
# The first kernel, a vectorized device copy, walks the whole path (CUDA C++ -> NVRTC -> CuPy launch ->
# validation -> timing -> record).

# %% tags=["parameters"]
DEVICE = "auto"  # "auto", "cpu" or "cuda"
SMOKE = False  # small sizes (CI, laptops)
LIVE = None  # None: benchmark now on a GPU, the committed record on CPU; False: the committed record
INTERACTIVE = True  # widgets
TOKENS = 32  # decode tokens per attention-DP rank, for the byte arithmetic
EP = 32  # expert-parallel size

# %%
from workbench import nbutil

dev = nbutil.banner(DEVICE)

# %% [markdown]
# ## The layer and its shapes
# One decoder layer per attention-DP rank: MLA attention with all 128 heads local, then the MoE with 256
# routed experts spread over `EP` ranks plus one shared expert. The table lists every weight in the order
# data flows.

# %%
from workbench.model import R1
from workbench import viz
from workbench.viz import overview as ov

d = R1
print(f"{d.name}: hidden {d.hidden}, {d.num_layers} layers ({d.num_moe_layers} MoE), {d.num_heads} heads, "
      f"qk head dim {d.qk_head_dim} (nope {d.qk_nope_dim} + rope {d.qk_rope_dim}), v head dim {d.v_head_dim}")
print(f"experts: {d.num_experts} routed (top-{d.top_k}, {d.num_groups} groups, top-{d.topk_groups} groups kept) "
      f"+ {d.num_shared_experts} shared; vocab {d.vocab}; softmax scale {d.softmax_scale:.6f}")
rows = ov.weight_bytes_per_layer(d, tokens=TOKENS, ep=EP)
viz.table([{**r, "bf16_MB": round(r["bf16_MB"], 1), "nvfp4_MB": round(r["nvfp4_MB"], 1)} for r in rows],
          title=f"Layer weights (EP{EP}: {d.num_experts // EP} routed experts per rank)").show()

# %% [markdown]
# ## Where each optimization acts

# %%
from workbench.mission import MISSION
from workbench.bench.records import all_records

recs = all_records()


def status(item):
    got = [recs[r] for r in item.records if r in recs and recs[r].get("cases")]
    if not got:
        return "not yet recorded"
    sp = []
    for rec in got:
        sp += [c["variants"][c["baseline"]]["median_us"] / c["variants"][c["optimized"]]["median_us"]
               for c in rec["cases"]]
    return f"{min(sp):.2f}x - {max(sp):.2f}x on {got[0]['device']['name']}"


from pathlib import Path
from IPython.display import Markdown, display

nb_dir = Path(nbutil.__file__).resolve().parents[1] / "notebooks"
lines = ["| # | optimization | acts on | notebook | recorded speedup (baseline / optimized) |",
         "|---|---|---|---|---|"]
for m in MISSION:
    if (nb_dir / f"{m.notebook}.ipynb").exists():
        link = f"[{m.notebook}]({m.notebook}.ipynb) ([report page]({m.notebook}.html))"
    else:
        link = f"{m.notebook} (planned)"
    lines.append(f"| {m.number} | {m.title} | {m.layer_step} | {link} | {status(m)} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## The ceilings of this GPU
# Two numbers bound every kernel: bytes over the measured copy bandwidth (bytes read + written), and
# flops over the measured matmul peak. Datasheet figures are leads; the workbench divides by what it
# measured on the card. On a GPU they are measured now; on CPU the recorded ones are shown.

# %%
from workbench.bench import ceilings as cl

if dev.type == "cuda":
    ceil = cl.measure_ceilings()
    where = f"measured now on {ceil.device}"
else:
    ceil = cl.recorded_ceilings()
    rec = recs.get("ceilings")
    where = nbutil.describe(rec, "ceilings") if rec else "no recorded ceilings yet"
print(where)
if ceil:
    ds = cl.datasheet_for(ceil.device) or {}
    print(f"copy {ceil.copy_TBps:.3f} TB/s, bf16 {ceil.bf16_TFLOPs:.0f} TFLOP/s, fp8 {ceil.fp8_TFLOPs:.0f} TFLOP/s")
    if ds:
        print(f"= {100 * ceil.copy_TBps / ds['hbm_TBps']:.0f}% / {100 * ceil.bf16_TFLOPs / ds['bf16_TFLOPs']:.0f}% / "
              f"{100 * ceil.fp8_TFLOPs / ds['fp8_TFLOPs']:.0f}% of the datasheet")

# %% [markdown]
# ## Roofline: why decode is memory-bound
# A GEMM with M tokens against an N x K bf16 weight does 2MNK flops and reads about 2NK bytes, so its
# arithmetic intensity is about M flop/byte. The ridge point (peak / bandwidth) is where compute starts to
# bind: a few hundred tokens on Hopper. Decode batches per rank sit far to the left.

# %%
if ceil:
    points = []
    for m in (1, 8, 32, 128, 512, 4096):
        n, k = d.weight_shapes()["o_proj"]
        flops, bytes_ = 2 * m * n * k, 2 * (n * k + m * k + m * n)
        ai = flops / bytes_
        points.append({"name": f"wo GEMM, M={m}", "intensity": ai,
                       "tflops": min(ceil.bf16_TFLOPs, ai * ceil.copy_TBps)})
    print(f"ridge point (bf16): {ceil.bf16_TFLOPs / ceil.copy_TBps:.0f} flop/byte")
    viz.roofline(ceil.copy_TBps, {"bf16": ceil.bf16_TFLOPs, "fp8": ceil.fp8_TFLOPs}, points,
                 datasheet=cl.datasheet_for(ceil.device),
                 title=f"Roofline of {ceil.device} (points: wo GEMM attainable at its intensity)").show()
    ov.fig_weight_bytes(rows, ceil.copy_TBps).show()

# %% [markdown]
# ## The first kernel: a vectorized copy
# `kernels/copy.cu` has three versions side by side: v1 moves one 4-byte word per thread and iteration; v2
# moves 16 bytes with four loads in flight before the first store, in a grid-stride loop; v3 keeps the
# 16-byte vectors but gives each block one 16 KiB tile and launches enough blocks to cover the buffer, so
# the block scheduler balances the SMs. A copy of N bytes moves 2N bytes, so its
# bound is 2N / copy bandwidth, and the measured copy bandwidth *is* a copy: the best a copy kernel can do
# is reach it. The reference is `src.clone()`; validation is bitwise.

# %%
import torch
from workbench.techniques import copy as wb_copy

n = 1 << 20
src = wb_copy.make_inputs(n, seed=0, device="cpu")
ref = wb_copy.reference(src)
print(f"reference on CPU: {n} bytes, check {wb_copy.validate(ref, src)}")
print(f"bytes moved for 1 GiB: {wb_copy.bytes_moved(2**30) / 1e9:.2f} GB"
      + (f" -> bound {ceil.bound_us(bytes=wb_copy.bytes_moved(2**30)):.0f} us on {ceil.device}" if ceil else ""))

# %%
rec = nbutil.results("copy", dev, smoke=SMOKE, live=LIVE)
print(nbutil.describe(rec, "copy"))
if rec:
    viz.variant_bars(rec, title="Copy: time per variant vs bound").show()
    viz.table(viz.speedup_table(rec), title="Copy: baseline vs optimized").show()

# %% [markdown]
# ## What we learned
# - Decode-time GEMMs of this layer have an arithmetic intensity of about M flop/byte, far left of the
#   ridge point printed above: their time is set by bytes, which is why every optimization in this
#   workbench either moves fewer bytes (NVFP4 weights and payloads, no copies) or removes gaps between
#   kernels (PDL, fusion, one all-to-all instead of four).
# - The copy kernel shows what "at the bound" means on this card; the table above gives its % of bound
#   as measured.
# - Each following notebook takes one optimization, builds it step by step, validates it, and shows each
#   variant beside its bound.
