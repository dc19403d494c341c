# %% [markdown]
# # 06 · MoE routing and all-to-all prepare, chained with programmatic dependent launch
#
# What you will learn here:
# - the DeepSeek-R1 routing rule (`noaux_tc`: sigmoid scores, a correction bias that selects but does not
#   weight, 8 groups of 32 experts, top-4 groups, top-8 experts, weights scaled by 2.5), on a worked example;
# - what the wide-EP all-to-all needs to know before it can move a single token (the "prepare": how many
#   tokens go to each rank, which ones, where they come back to, where the received ones land);
# - why these five kernels are bound by launch latency, not by bytes or flops;
# - what programmatic dependent launch (PDL, TensorRT-LLM PR 7977) changes: each kernel is launched while
#   its predecessor still runs and waits in `griddepcontrol.wait` for its data; a `%globaltimer`
#   timeline shows the overlap, the way the blog's Nsight Systems figures did;
# - how much it saves on an eager stream and inside a CUDA graph, next to the plain-torch chain a framework
#   gives, and what that means for a 61-layer decode step.

# %% tags=["parameters"]
DEVICE = "auto"  # "auto", "cpu" or "cuda"
SMOKE = False  # small sizes (CI, laptops)
LIVE = None  # None: benchmark now on a GPU, the committed record on CPU; False: the committed record
INTERACTIVE = True  # widgets
TOKENS = 128  # tokens per rank for the examples and the live timeline
EP_SIZE = 8  # expert-parallel ranks (must divide 256)
SEED = 0

# %%
from workbench import nbutil

dev = nbutil.banner(DEVICE)

# %%
import torch

from workbench import viz
from workbench.model import R1
from workbench.techniques import pdl_routing as P
from workbench.viz import pdl_routing as V

# %% [markdown]
# ## What PDL does
# Kernels on one stream normally run strictly one after the other: kernel k+1 is launched only once
# kernel k has completed and flushed its memory. For a kernel that runs for 1-5 us, the gap (the front
# end launching the grid, rasterizing blocks onto SMs, the prologue) is of the same size as the work.
#
# With the launch attribute `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION` on kernel k+1, two
# PTX instructions take over the ordering:
# - `griddepcontrol.launch_dependents` in kernel k (here: `pdl_trigger()`) says "the next grid may be
#   scheduled now";
# - `griddepcontrol.wait` in kernel k+1 (`pdl_wait()`) blocks until kernel k has completed and its writes
#   are visible.
#
# TensorRT-LLM puts both at the very top of these routing/prepare kernels (wait, then trigger, after
# nothing but index arithmetic), and so do we (`kernels/routing.cu`). It is safe because nothing before
# the wait touches data a predecessor writes, and completion is transitive: kernel k passed its own wait
# before it could trigger k+1, so when k+1's wait returns every earlier kernel of the chain has completed.
# The early trigger only lets the next grid become resident and park in its wait, so its launch
# latency is hidden under the predecessor's body.

# %% [markdown]
# ## The routing rule on one token
# s = sigmoid(logits), b = s + bias. Group score = sum of the two best b in each group of 32. Keep the 4
# best groups; pick the 8 experts of highest b inside them; weight_k = s_k / sum(s) * 2.5. The bias moves
# the choice (it balances the load) but never the weights. Ties go to the lower index.

# %%
ex_inp = P.make_inputs(4, EP_SIZE, seed=SEED, device="cpu")
ex = P.explain_token(ex_inp["logits"][0], ex_inp["bias"])
print("group scores (top-1 + top-2 biased score):", [round(x, 4) for x in ex["group_score"]])
print("kept groups, best first:                 ", ex["kept_groups"])
print("experts, best first:                      ", ex["expert_ids"], " (groups", ex["expert_group"], ")")
print("biased scores b:                          ", [round(x, 4) for x in ex["biased_score"]])
print("unbiased scores s:                        ", [round(x, 4) for x in ex["score"]])
print("weights (sum 2.5):                        ", [round(x, 4) for x in ex["weights"]],
      "sum", round(sum(ex["weights"]), 6))

# %% [markdown]
# ## The all-to-all prepare for this batch
# Experts are placed contiguously: rank r owns experts r*256/E ... (r+1)*256/E - 1. A token is sent once
# to every rank that owns at least one of its 8 experts (never twice to the same rank), with a backward
# index token*8 + k (k = its first expert on that rank) so the combine can put the result back. The
# counts become exclusive prefix sums, the per-rank lists are compacted at those offsets, and the receive
# rows that no peer fills get the sentinel expert id 256 so the MoE GEMMs skip them.

# %%
ex_ref = P.reference(ex_inp["logits"], ex_inp["bias"], EP_SIZE, ex_inp["peer_counts"])
total_send = int(ex_ref["send_offsets"][-1])
print("expert ids:\n", ex_ref["expert_ids"])
print("send counts per rank:   ", ex_ref["send_counts"].tolist())
print("send offsets (excl.):   ", ex_ref["send_offsets"].tolist())
print("send index (tokens):    ", ex_ref["send_index"][:total_send].tolist())
print("backward index (t*8+k): ", ex_ref["backward_index"][:total_send].tolist())
print("peer counts -> recv counts (clamped to [0, M]):", ex_inp["peer_counts"].tolist(), "->",
      ex_ref["recv_counts"].tolist())
print("recv rows used:", int(ex_ref["recv_offsets"][-1]), "of", ex_ref["recv_expert_ids"].shape[0],
      "; the rest get expert id", P.SENTINEL)

# %% [markdown]
# ## Napkin math: these kernels are latency-bound
# The bytes each kernel touches, and the time they would take at the card's copy bandwidth, against a
# typical launch gap of a couple of microseconds per kernel boundary (measured below from the timeline).

# %%
from workbench.bench import recorded_ceilings

ceil = recorded_ceilings()  # measured copy bandwidth (bytes read + written) from data/results/ceilings.json
bw_TBps = ceil.copy_TBps if ceil else 3.35 * 0.85  # else ~85% of the H100 datasheet HBM bandwidth
print(f"copy bandwidth used: {bw_TBps:.2f} TB/s ({ceil.device if ceil else 'datasheet estimate'})")
rows = []
for name, nbytes in P.chain_bytes(TOKENS, EP_SIZE).items():
    rows.append({"kernel": name, "bytes": nbytes, "time at copy bandwidth (us)": round(nbytes / (bw_TBps * 1e6), 3)})
viz.table(rows, title=f"T={TOKENS}, E={EP_SIZE}: bytes per kernel").show()
print(f"{R1.num_moe_layers} MoE layers x 4 in-chain kernel boundaries = {4 * R1.num_moe_layers} boundaries "
      "per decode step (5 with the router GEMM -> routing boundary)")

# %% [markdown]
# ## Reference check
# `reference` is vectorized torch (and sync-free, so on a GPU it is also the `torch_ops` baseline).
# `reference_loops` is an independent per-token Python version with numpy fp32 scalars in the same
# operation order: the two must agree bit for bit, ties included. The weights are also checked against
# an fp64 computation: they may differ only by fp32 rounding.

# %%
n_check = 8 if SMOKE else 32
for ties in (False, True):
    inp = P.make_inputs(n_check, EP_SIZE, seed=SEED + 1, device="cpu", ties=ties)
    ref = P.reference(inp["logits"], inp["bias"], EP_SIZE, inp["peer_counts"])
    loops = P.reference_loops(inp["logits"], inp["bias"], EP_SIZE, inp["peer_counts"])
    same = (torch.equal(ref["expert_ids"], torch.from_numpy(loops["expert_ids"]))
            and torch.equal(ref["weights"], torch.from_numpy(loops["weights"]))
            and ref["send_counts"].tolist() == loops["send_counts"])
    w64 = P.reference_weights_fp64(inp["logits"], ref["expert_ids"])
    rel = float(((ref["weights"].double() - w64).abs() / w64).max())
    print(f"ties={ties}: vectorized == per-token loops: {same}; weights vs fp64: max rel err {rel:.2e}")
    assert same and rel < 1e-6

# %% [markdown]
# ## The kernels
# `kernels/routing.cu` (CuPy/NVRTC, sm_90a): `route_noaux_tc` (one warp per token; lane l holds expert
# g*32+l in register g, so each group is one warp reduction), `count_and_indices` (one CTA per destination
# rank, a block scan instead of atomics so the lists come out in token order, deterministic), `cumsum_counts`,
# `move_indices`, `memset_expert_ids`. They are launched through pre-packed `cuLaunchKernelEx` calls
# (`PreparedLaunch`): the argument array and the launch configuration are built once, so a launch costs
# a few microseconds of host time and five launches stay ahead of the GPU.

# %%
try:
    from workbench.runtime import compile_kernel

    res = compile_kernel("routing").resources
    viz.table([{"kernel": r.name, "registers": r.registers, "spills": r.spills, "static smem (B)": r.smem_bytes}
               for r in res.values() if r.name in P.KERNELS], title="ptxas report (sm_90a)").show()
except Exception as e:  # NVRTC missing on this machine
    print("compile report unavailable:", e)

# %% [markdown]
# ## Validation and the slow-predecessor test
# On a GPU: the chain with PDL off and on against the reference, bit-identical; then a producer that
# triggers its dependents at once, spins 100 us and only then writes the logits, followed by the chain
# with PDL on every kernel. The routing kernel starts while the producer spins and must still see the new
# logits; built without its wait (negative control) it must not. On CPU the recorded checks are shown.

# %%
if dev.type == "cuda":
    inp = P.make_inputs(TOKENS, EP_SIZE, seed=SEED)
    ref = P.reference(inp["logits"].cpu(), inp["bias"].cpu(), EP_SIZE, inp["peer_counts"].cpu())
    outs = {pdl: P.route_and_prepare(inp["logits"], inp["bias"], EP_SIZE, inp["peer_counts"], pdl=pdl)
            for pdl in (False, True)}
    torch.cuda.synchronize()
    for pdl, out in outs.items():
        print(f"PDL {'on ' if pdl else 'off'}:", P.compare_outputs(out, ref, fields=[k for k in ref if k !=
                                                                                     "recv_expert_ids"]))
    print("PDL on == off bit for bit:", P.bitwise_equal(outs[False], outs[True]))
    stress = P.stress_validate(n_iter=50 if SMOKE else 300)
    print("stress:", stress)
    slow = P.slow_predecessor_check(spin_us=100.0)
    neg = P.slow_predecessor_check(spin_us=100.0, skip_wait=True)
else:
    stress = slow = neg = None
rec = nbutil.results("pdl_routing", dev, smoke=SMOKE, live=LIVE)
print(nbutil.describe(rec, "pdl_routing"))
extras = (rec or {}).get("extras", {})
if stress is None and extras:
    stress = extras.get("stress")
    print("recorded stress validation:", stress)
if slow is not None:
    print(f"slow predecessor: correct {slow['correct']}, routing kernel entered "
          f"{slow['route_started_before_producer_end_us']:.1f} us before the producer ended, its wait returned "
          f"{slow['route_wait_returned_after_producer_end_us']:.2f} us after; passed {slow['passed']}")
    print(f"negative control (no wait): correct {neg['correct']} (must be False): mismatched expert ids "
          f"{neg['compare']['expert_ids']}")
elif extras:
    print("recorded checks passed:", extras.get("checks_summary"))

# %% [markdown]
# ## The timeline
# Every kernel can write `%globaltimer` per block at entry, when its wait returned, and at exit. Light
# bars: blocks resident but parked in `griddepcontrol.wait`; dark bars: running. With PDL off each grid
# appears only after its predecessor ended; with PDL on it is already resident and starts within a
# fraction of a microsecond of the predecessor's end.

# %%
if dev.type == "cuda":
    timelines, spans = P.live_timelines(TOKENS, EP_SIZE, seed=SEED)
    tl_label = f"T{TOKENS}_E{EP_SIZE} (live)"
elif extras.get("timelines"):
    tl_label = next(iter(extras["timelines"]))
    timelines, spans = extras["timelines"][tl_label], extras["spans"][tl_label]
else:
    timelines = spans = None
if timelines:
    V.fig_timeline(timelines, title=f"Chain timeline, {tl_label}").show()
    V.fig_boundary_gaps(spans).show()
    for mode, s in spans.items():
        print(f"{mode:13s} chain {s['total_us']:6.2f} us from first entry to last exit; sum of kernel bodies "
              f"{s['sum_body_us']:5.2f} us; boundary gaps {[round(g, 2) for g in s['gap_us']]}")
else:
    print("no timeline available (no GPU and no record)")

# %% [markdown]
# ## Latency: eager stream and CUDA graph, against plain torch
# Each number is one CUDA-event pair around one chain, the GPU kept fed (a sleep kernel queued first, so
# the host has issued every launch before the GPU gets there), median of many samples, variants
# interleaved. `torch_ops` is the same chain in plain eager torch (the reference code), `torch_ops_graph`
# that chain captured in a CUDA graph. The bound is the sum of the five kernel bodies with zero gaps,
# from the PDL-off timeline.

# %%
if rec:
    viz.table(viz.speedup_table(rec), title="PDL off (baseline) vs PDL on (optimized), eager stream").show()
    lat_rows = []
    for c in rec["cases"]:
        v = c["variants"]
        row = {"case": c["name"]}
        row.update({k: round(x["median_us"], 2) for k, x in v.items()})
        row["bound"] = round(c["bound_us"], 2)
        row["PDL saving eager %"] = round(100 * (1 - v["pdl_on"]["median_us"] / v["pdl_off"]["median_us"]), 1)
        row["PDL saving graph %"] = round(100 * (1 - v["graph_pdl_on"]["median_us"]
                                                 / v["graph_pdl_off"]["median_us"]), 1)
        row["torch_ops / pdl_on"] = round(v["torch_ops"]["median_us"] / v["pdl_on"]["median_us"], 1)
        lat_rows.append(row)
    viz.table(lat_rows, title="Chain latency (us, median)").show()
    V.fig_latency(rec).show()
    V.fig_pdl_saving(rec).show()
    if extras.get("unfed_us"):
        print("Without feeding (synchronize before each sample: the host's launch cost is in the time):")
        for name, u in extras["unfed_us"].items():
            print(f"  {name:10s} " + "  ".join(f"{k} {x:.1f} us" for k, x in u.items()))
    if extras.get("host_launch_us"):
        print("host time per launch (us):", extras["host_launch_us"])
else:
    print("no results: run `workbench bench pdl_routing --record` on a GPU")

# %% [markdown]
# ## What it means for a decode step
# DeepSeek-R1 has 61 layers, of which 58 are MoE layers; each runs this chain once per decode step (per
# rank). The saving per step is the per-layer saving times 58.

# %%
if rec:
    viz.table(P.decode_step_savings(rec), title=f"PDL saving per decode step ({R1.num_moe_layers} MoE layers)").show()

# %%
if INTERACTIVE and rec and extras.get("timelines"):
    import ipywidgets as widgets

    def _show(case):
        V.fig_timeline(extras["timelines"][case], title=f"Chain timeline, {case}", per_block=True).show()

    widgets.interact(_show, case=list(extras["timelines"]))

# %% [markdown]
# ## What we learned
# - The routing and prepare kernels move a few kilobytes; their cost is launch latency and the serial
#   dependency between them, so the lever is the gap between kernels, not the kernels' bandwidth.
# - With PDL each grid becomes resident while its predecessor still runs and parks in
#   `griddepcontrol.wait`; the timeline shows the dependent's blocks entering microseconds early and
#   starting within a fraction of a microsecond of the predecessor's end, where without PDL the gap is a
#   couple of microseconds per boundary.
# - Outputs are bit-identical with PDL on and off, on thousands of random inputs with ties, and the
#   slow-predecessor test shows the wait holding: the dependent started early yet read the new data, and
#   without the wait it read stale data.
# - On an eager stream PDL helps only when the host keeps the GPU fed: cuda-bindings launches cost
#   microseconds of Python each (pre-packing arguments and configurations matters); measured from an idle
#   GPU the chain is host-bound and PDL's gain shrinks to the few microseconds the GPU side saves.
# - Inside a CUDA graph the launch gaps are already smaller, and PDL still removes part of what is left;
#   the graph with PDL is the fastest variant.
# - The plain-torch chain is dominated by dozens of small ops and their launches; even captured in a CUDA
#   graph it stays far behind the five hand-written kernels.
