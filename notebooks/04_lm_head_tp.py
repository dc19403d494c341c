# %% [markdown]
# # 04 · The MTP LM head, tensor-parallel, with a distributed argmax
#
# What you will learn here:
# - why the MTP draft step's LM head (129280 x 7168 bf16, 1.85 GB) is memory-bound on every attention-DP
#   rank: a few tokens per rank against the whole weight, far below the memory/compute crossover;
# - the TP trick of TensorRT-LLM (PRs 7571/7891): all-gather the hidden rows of a group of N ranks, let each
#   rank multiply them by 1/N of the vocabulary, reduce every row to a local (max, id), exchange those pairs,
#   pick; the TP size heuristic `clamp(next_pow2(256 // B), 1, GPUs per node)`;
# - why NCCL makes it slower than one GPU at these sizes (tens of microseconds per call for KB-sized
#   messages) and how peer buffers written over NVLink, with a flag per (rank, step), fix that;
# - how the tie-break (lowest vocabulary id) survives the split, and how we test it with exact ties and
#   zero padding rows.
#
# On a CPU the algorithm runs on gloo ranks (spawned from this notebook) at small sizes, with the peer
# protocol modelled in shared memory; the GPU numbers come from the committed record.

# %% tags=["parameters"]
DEVICE = "auto"  # "auto", "cpu" or "cuda"
SMOKE = False  # small sizes (CI, laptops)
LIVE = None  # None: benchmark now on a GPU, the committed record on CPU; False: the committed record
INTERACTIVE = True  # widgets
TOKENS_PER_RANK = 32  # B: draft rows per attention-DP rank (padded batch)
GPUS_PER_NODE = 4  # the heuristic's clamp (4 on the measured host, 8 on HGX H100)
CPU_RANKS = 4  # ranks of the CPU (gloo) run
CPU_VOCAB = 4000  # small shapes for the CPU run
CPU_HIDDEN = 64

# %%
from workbench import nbutil

dev = nbutil.banner(DEVICE)

# %% [markdown]
# ## Napkin math: bytes, flops and the crossover
# A bf16 GEMM with T token rows reads the weight once (2 bytes per weight) and does 2·T flops per weight:
# its intensity is T flop/byte. Below peak/bandwidth tokens the GEMM waits on memory, so the time is flat
# in T. TP by N reads 1/N of the weight per rank for N·B rows: the same flops, N times fewer bytes.

# %%
from workbench import viz
from workbench.bench import datasheet_for, recorded_ceilings
from workbench.model import R1
from workbench.techniques import lm_head_tp as L
from workbench.viz import lm_head as vl

rec_ceil = recorded_ceilings()
sheet = datasheet_for("H100")
copy_TBps = rec_ceil.copy_TBps if rec_ceil else sheet["hbm_TBps"]
bf16_TFLOPs = rec_ceil.bf16_TFLOPs if rec_ceil else sheet["bf16_TFLOPs"]
src = f"measured on {rec_ceil.device}" if rec_ceil else "H100 datasheet (no recorded ceilings)"
print(f"ceilings ({src}): copy {copy_TBps} TB/s, bf16 {bf16_TFLOPs} TFLOP/s")
print(f"crossover tokens = peak / bandwidth = {L.crossover_tokens(copy_TBps, bf16_TFLOPs):.0f} "
      f"(the blog's rule of thumb: {L.CROSSOVER_RULE_TOKENS})")
tp_h = L.tp_size(TOKENS_PER_RANK, GPUS_PER_NODE)
print(f"heuristic TP size for B={TOKENS_PER_RANK}, {GPUS_PER_NODE} GPUs per node: {tp_h}")
rows = []
for tp in (1, 2, 4, 8):
    c = L.cost_model(TOKENS_PER_RANK, tp)
    rows.append({"TP": tp, "weight MB/rank": round(c["weight_bytes"] / 1e6, 1),
                 "all-gather KB in/rank": round(c["allgather_bytes_in"] / 1e3, 1),
                 "GFLOP/rank": round(c["flops"] / 1e9, 1), "flop/byte": c["intensity_flop_per_byte"],
                 "bound us": round(L.bound_us(TOKENS_PER_RANK, tp, copy_TBps), 1)})
viz.table(rows, title=f"One draft step per rank, B = {TOKENS_PER_RANK}").show()
vl.fig_bytes_vs_tp({tp: L.cost_model(TOKENS_PER_RANK, tp) for tp in (1, 2, 4, 8)}).show()
print("heuristic TP size by tokens per rank:",
      {b: L.tp_size(b, GPUS_PER_NODE) for b in (1, 8, 16, 32, 64, 128, 256, 512)})

# %% [markdown]
# ## The flow of one draft step
# Only the GEMM moves many bytes, and they come from this rank's HBM; the two collectives move kilobytes,
# so their latency, not their bandwidth, is what they cost.

# %%
vl.fig_data_movement(TOKENS_PER_RANK, tp_h, R1.vocab, R1.hidden).show()

# %% [markdown]
# ## Reference and the algorithm in one process
# `reference` is the argmax of X W^T in fp64 with the lowest id on ties. `simulate_tp` runs the TP steps in
# one process: the ids must be identical. Inputs: Gaussian rows, two rows aimed at planted duplicate weight
# rows (an exact tie; one pair spans two TP ranks), and zero padding rows (all logits 0, id 0).

# %%
import torch

w_small = L.make_weight(CPU_VOCAB, CPU_HIDDEN, seed=1, kind="grid")
n_valid = 5
xs = [L.make_hidden(8, n_valid, w_small, seed=2, rank=r, kind="grid") for r in range(4)]
sim = L.simulate_tp(xs, w_small, 4)
for r in range(4):
    ref = L.reference(xs[r], w_small)
    print(f"rank {r}: reference {ref.tolist()}\n        TP sim    {sim[r].tolist()}  "
          f"{L.validate(sim[r], xs[r], w_small, n_valid, 'grid', ref)}")
print("planted ties (row -> expected lowest id):", L.expected_tie_ids(CPU_VOCAB, n_valid))

# %% [markdown]
# ## The algorithm on real ranks
# `dist.spawn` starts `CPU_RANKS` processes (gloo on CPU, NCCL with one GPU per rank when this notebook runs
# on a multi-GPU host), runs `lm_head_tp.run_ranks` on each and returns their results here. Each rank runs
# the full-vocabulary head, the collective TP head and the peer-buffer TP head twice on fresh inputs (so
# the peer buffers are reused across steps), on Gaussian and on exact-grid inputs.

# %%
import torch

from workbench.runtime import dist

n_gpu = torch.cuda.device_count() if dev.type == "cuda" else 0
backend, world = ("nccl", min(n_gpu, CPU_RANKS)) if n_gpu >= 2 else ("gloo", CPU_RANKS)
results = dist.spawn(L.run_ranks, world, tokens=8, n_valid=6, vocab=CPU_VOCAB, hidden=CPU_HIDDEN,
                     backend=backend, timeout_s=120)
table_rows = []
for r in results:
    for run in r["runs"]:
        for name, v in run["validation"].items():
            table_rows.append({"rank": r["rank"], "inputs": run["kind"], "step": run["step"], "variant": name,
                               "ids": str(run[name].tolist()), "mismatches": v["mismatches"],
                               "padding id 0": v["padding_rows_zero"], "ties lowest": v["ties_lowest_id"],
                               "passed": v["passed"]})
viz.table(table_rows[: 6 * 4], title=f"{world} {backend} ranks: draft ids per variant (first rows)").show()
print("every variant on every rank equals the reference:", all(t["passed"] for t in table_rows))

# %% [markdown]
# ## Results on GPUs
# Cases `tokens{B}_tp{N}`: `full_1gpu` (every rank, whole vocabulary: the baseline), `nccl_tp` (NCCL
# all-gathers, CUDA graph), `nccl_tp_eager` (the same launched eagerly, as a framework would), `own_tp` (the
# peer-buffer all-gather and fused argmax exchange of kernels/peer.cu). Cases `allgather_{B}x7168_{N}gpu`:
# NCCL vs the peer-buffer all-gather. Each sample is the slowest rank's time, GPUs lined up by a device
# barrier first; every variant was validated in the same run.

# %%
rec = nbutil.results("lm_head_tp", dev, smoke=SMOKE, live=False if LIVE is False or dev.type == "cpu" or n_gpu < 2 else LIVE)
print(nbutil.describe(rec, "lm_head_tp"))
if rec:
    print(f"GPUs: {rec.get('gpus')}; links: {rec.get('topology', {}).get('summary')}")
    print(f"logits: {rec.get('logits_path')}; all-gather CTAs: {rec.get('allgather_nblocks')}")
    viz.table(viz.speedup_table(rec), title="baseline -> optimized, per case").show()
    if any(c["name"].startswith("tokens") for c in rec["cases"]):
        vl.fig_time_vs_tokens(rec).show()
        vl.fig_speedup(rec).show()
    if any(c["name"].startswith("allgather") for c in rec["cases"]):
        vl.fig_allgather(rec).show()
    if rec.get("roofline"):
        vl.fig_roofline(rec["roofline"], rec["device"]["name"]).show()

# %% [markdown]
# ## Explore
# Move B to see the heuristic's TP size and the bound of each TP size.

# %%
if INTERACTIVE:
    import ipywidgets as widgets
    from IPython.display import display

    def show(tokens_per_rank=32, gpus_per_node=GPUS_PER_NODE):
        print(f"heuristic TP = {L.tp_size(tokens_per_rank, gpus_per_node)}; bound per TP size (us): "
              + ", ".join(f"TP{t}: {L.bound_us(tokens_per_rank, t, copy_TBps):.0f}" for t in (1, 2, 4, 8)))

    display(widgets.interactive(show, tokens_per_rank=widgets.IntSlider(32, 1, 512),
                                gpus_per_node=widgets.IntSlider(GPUS_PER_NODE, 1, 8)))

# %% [markdown]
# ## What we learned
# - At decode sizes the LM head costs one full read of its weight per rank, whatever the token count below
#   the crossover; splitting the vocabulary over N ranks divides that read by N and leaves the flops alone.
# - The collectives around it move kilobytes, so they cost latency. A generic collective library pays a
#   fixed price per call that can eat the whole saving; direct stores into peer buffers over NVLink with a
#   flag per (rank, step) cost a few microseconds, and the device-side step counter makes them reusable
#   and capturable in a CUDA graph.
# - A distributed argmax is exact if every stage breaks ties the same way: first maximum inside a slice,
#   lowest rank across slices, slices in vocabulary order. Exact-grid inputs with planted ties and zero
#   padding rows test it bit for bit.
# - Compare the one-GPU head, the NCCL TP head and the peer-buffer TP head in the figures above, each next to
#   its bound, on the card named in the record's provenance line.
