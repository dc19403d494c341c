# %% [markdown]
# # 05 · MLA context attention on separate Q/K/V (no k assembly)
#
# What you will learn here:
# - the context (prefill) MLA of DeepSeek-R1 as an attention problem: q [T, 128, 192], keys made of
#   k_nope (a strided view into kv_b_proj's output) and k_pe (one rope key per token shared by all 128
#   heads), values v (another strided view); causal, softmax scale 0.135234, output [T, 128, 128];
# - what a library FMHA costs end to end: assemble k [T, 128, 192] (and maybe a contiguous v), then
#   attend (here: cuDNN through torch SDPA);
# - a flash-attention kernel that reads q, k_nope, k_pe and v where they are (TensorRT-LLM PR 6538's
#   "separate QKV" input layout), validated against an fp32 reference on single and varlen batches;
# - its TFLOP/s against the sequence length, against cuDNN, and against the same kernel on assembled
#   inputs, which isolates the technique's claim: the copy's time is saved.
#
# **Technology: Triton.** The two GEMMs per KV tile must run on Hopper's wgmma (warpgroup-wide,
# asynchronous MMA fed from shared memory) to get past roughly half of the bf16 peak; the portable
# mma.sync path leaves the tensor cores idle while registers are shuffled. Writing wgmma plus a TMA
# pipeline by hand in inline PTX is weeks of work; Triton ships with torch, lowers `tl.dot` to wgmma on
# sm_90, drives TMA through tensor descriptors, software-pipelines the KV loads into a multi-stage
# shared-memory ring, and keeps the kernel a page of readable code
# (`workbench/techniques/separate_qkv_triton.py`). The FP8 attention (notebook 03) reuses the same
# shape: tiles, pipeline, then the data types.

# %% tags=["parameters"]
DEVICE = "auto"  # "auto", "cpu" or "cuda"
SMOKE = False  # small sizes (CI, laptops)
LIVE = None  # None: benchmark now on a GPU, the committed record on CPU; False: the committed record
INTERACTIVE = True  # widgets
TOKENS = 8192  # sequence length for the napkin math

# %%
from workbench import nbutil

dev = nbutil.banner(DEVICE)

# %% [markdown]
# ## Napkin math
# Causal attention does 2*H*S^2*(192+128)/2 flops for one sequence of S tokens (QK^T over 192-dim keys,
# PV over 128-dim values, half of the square). The separate-Q/K/V kernel reads q, k_nope, v and k_pe once
# and writes the output; the assembled pipeline additionally writes k and reads it back (and copies v if
# the library needs it contiguous).

# %%
from workbench.model import R1
from workbench.techniques import knope_copy as K
from workbench.techniques import separate_qkv as S
from workbench.bench import ceilings as cl

f = S.causal_flops(TOKENS)
b = S.bytes_separate(TOKENS)
print(f"S = {TOKENS}, H = {R1.num_heads}: {f / 1e12:.2f} TFLOP causal; no-copy kernel moves {b / 1e9:.2f} GB "
      f"-> arithmetic intensity {f / b:.0f} FLOP/B (compute-bound)")
rc = cl.recorded_ceilings()
if rc:
    print(f"  bound on {rc.device}: {f / (rc.bf16_TFLOPs * 1e12) * 1e6:.0f} us at the measured bf16 matmul peak "
          f"({rc.bf16_TFLOPs:.0f} TFLOP/s)")
asm = K.bytes_moved(TOKENS)
print(f"assembly: {asm / 1e9:.3f} GB moved to build k, plus reading the {TOKENS * R1.num_heads * 64 * 2 / 1e6:.0f} MB "
      "of broadcast k_pe back inside the attention instead of one 64-wide key per token")
for name, tbps in [("H100 datasheet 3.35 TB/s", 3.35), ("H200 datasheet 4.8 TB/s", 4.8)]:
    print(f"  assembly floor on {name}: {asm / (tbps * 1e12) * 1e6:.0f} us "
          f"= {100 * asm / (tbps * 1e12) / (f / 989e12):.1f}% of the attention's floor at 989 TFLOP/s")

# %% [markdown]
# ## Reference (fp32, CPU-capable) and the kernel's validation
# `separate_qkv.reference` takes exactly the tensors and strides above (and a varlen `cu_seqlens`), does
# the math in fp32 and is checked against fp64 and a token-by-token loop in the tests. On a GPU the
# kernel is checked here on a single sequence and on a varlen batch with an empty sequence.
#
# **Tolerance: rel-L2 <= 1e-2.** Inputs are bf16 in both. Rounding the output to bf16 alone costs
# ~2^-9/sqrt(3) ~ 0.1% rel-L2, rounding P to bf16 before the P@V product about as much again, and fp32
# accumulation order differences are far below that; a correct kernel lands near 0.3-0.5%. A wrong
# mask, a dropped tile or a bad rescale lands at 10% or more.

# %%
import torch
from workbench.model import SMALL

on_gpu = dev.type == "cuda"
dims = R1 if on_gpu else SMALL
lens = [700, 0, 1024, 300] if (on_gpu and not SMOKE) else [40, 0, 17, 7]
x = S.make_inputs(sum(lens), dims, seed=0, device=dev)
cu = S.cu_seqlens_for(lens, device=dev)
ref = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], cu, scale=dims.softmax_scale)
ref64 = S.reference(x["q"], x["k_nope"], x["k_pe"], x["v"], cu, scale=dims.softmax_scale,
                    compute_dtype=torch.float64)
print(f"{dims.name}, varlen {lens}: fp32 reference vs fp64 rel-L2 {S.rel_l2(ref, ref64):.2e}; "
      f"bf16 rounding of the reference alone: {S.rel_l2(ref.bfloat16(), ref64):.2e}")
if on_gpu:
    out = S.attention(x["q"], x["k_nope"], x["k_pe"], x["v"], cu_seqlens=cu, scale=dims.softmax_scale)
    print("kernel (separate Q/K/V, varlen) vs fp32 reference:", S.validate(out, ref))
    a = S.assemble(x, contiguous_v=True)
    dn = dims.qk_nope_dim
    out2 = S.attention(x["q"], a["k"][..., :dn], a["k"][..., dn:], a["v"], cu_seqlens=cu, scale=dims.softmax_scale)
    print("kernel (assembled k, contiguous v, varlen) vs fp32 reference:", S.validate(out2, ref))

# %% [markdown]
# ## The kernel, step by step
# One program owns BLOCK_M query rows of one head of one sequence and walks the KV tiles left of the
# diagonal without any mask, then the diagonal tile(s) with the causal mask; the programs of the last
# (longest) query blocks are launched first so the grid's tail is short. Scores are the rope dot
# (K = 64) with the nope dot (K = 128) chained onto the same fp32 accumulator; the softmax stays in base
# 2 with scale * log2(e) folded into the FFMA that feeds exp2. The config switches the GPU sweep
# compares (each one validated against the fp32 reference before it is timed):
# - **tiles and warps**: 128 x 32 with 8 warps fits two programs per SM (one's softmax overlaps the
#   other's wgmma) but runs QK^T as thin m64n32 wgmma; 128 x 64 and wider run fatter wgmma with one
#   program per SM; 256-row tiles with 16 warps halve the K/V traffic per flop; 64-row tiles double it.
# - **TMA**: K/V tiles arrive by tensor-descriptor bulk copies instead of per-thread cp.async. Each
#   strided view is described as a 2-D window [T, (H-1) x head stride + D] whose row stride is the token
#   stride, so head h's tile sits at column h x head stride: the views are read where they are.
# - **prefetched scores**: the unmasked loop is software-pipelined by hand: the nope dot of tile j+1 is
#   issued as an asynchronous wgmma before the softmax of tile j, meant to let the tensor cores and the
#   CUDA cores work at the same time (FlashAttention-3's intra-warpgroup overlap; the sweep shows
#   whether it pays).
# - **lazy rescale**: the [BLOCK_M, 128] output accumulator is rescaled only when a row's running max
#   grew by more than 2^8; numerator and denominator share the stale max, so the result is exact.
# - pipeline depth (stages), loop unrolling, and the grid order (query tiles or heads fastest).
#
# The sweep below (from the record: same run, same card as the benchmark) shows each config's TFLOP/s
# at T = 8192; the fastest one that also passes a varlen batch and the assembled-k layout is the config
# every pipeline of the benchmark uses.

# %%
rec = nbutil.results("separate_qkv", dev, smoke=SMOKE, live=LIVE)
print(nbutil.describe(rec, "separate_qkv"))

# %%
from workbench import viz
from workbench.viz import mla as vm

sweep = rec.get("sweep") if rec else None
if sweep:
    rows = []
    for r in sweep["rows"]:
        row = {"config": r["name"], "valid": r.get("passed"), "rel-L2": r.get("rel_l2"), "regs": r.get("regs"),
               "spills": r.get("spills"), "smem KB": round(r["smem"] / 1024) if r.get("smem") else None}
        for key in ("round1", "round2"):
            if key in r:
                row[key] = f"{r[key]['median_us']:.0f} us ({r[key]['p20_us']:.0f}-{r[key]['p80_us']:.0f}), " \
                           f"{r[key]['TFLOPs']:.0f} TFLOP/s"
        if "error" in r or "skipped" in r:
            row["note"] = (r.get("error") or r.get("skipped"))[:80]
        rows.append(row)
    viz.table(rows, title=f"config sweep at {sweep['case']} ({sweep['timing']})").show()
    vm.fig_config_sweep(sweep, marks={"target 450 TFLOP/s": 450.0}).show()
    print("chosen:", sweep["best"], "| previous default:", sweep["previous_default"])

# %% [markdown]
# ## Benchmark: three pipelines, end to end
# - `assemble_then_cudnn` (baseline): k assembled by the fastest kernel of notebook 09 (v made contiguous
#   only if cuDNN refuses the strided view; the record says which), then torch SDPA pinned to the cuDNN
#   backend on [1, H, T, D] views;
# - `assemble_then_own`: the same assembly, then our kernel on the assembled tensors;
# - `own_separate` (optimized): our kernel on q, k_nope, k_pe, v as they are.
# `assembly_only` and `cudnn_only` split the baseline. The pipelines of a case are timed in interleaved
# rounds (A, B, C, ..., A, B, C, ...), so clock drift lands on all of them alike; each time is the median
# with p20/p80. On a GPU the benchmark runs in the cell above; on CPU the record is shown.

# %%
if rec:
    rows = []
    for c in rec["cases"]:
        fl = c["params"]["flops"]
        row = {"case": c["name"], "bound_us": round(c["bound_us"], 1)}
        for v, tm in c["variants"].items():
            rate = "" if v == "assembly_only" else f", {fl / tm['median_us'] / 1e6:.0f} TFLOP/s"
            row[v] = f"{tm['median_us']:.0f} us{rate}"
        row["valid"] = c["validation"]["passed"]
        rows.append(row)
    viz.table(rows, title="MLA context attention: median time and TFLOP/s per pipeline").show()
    peak = rec["device"].get("ceilings", {}).get("bf16_TFLOPs")
    vm.fig_tflops_vs_seqlen(rec, peak_tflops=peak, marks={"target 450 TFLOP/s": 450.0}).show()
    vm.fig_pipeline_breakdown(rec).show()
    viz.variant_bars(rec, title="time per pipeline vs the compute bound").show()

# %% [markdown]
# ## Done-when check
# Same card, one run: validation, the technique's claim (no-copy beats assemble + the same kernel by
# about the assembly's time), the kernel's TFLOP/s at T = 8192, and where it stands against cuDNN.

# %%
if rec:
    for c in rec["cases"]:
        v = c["variants"]
        fl = c["params"]["flops"]
        med = {k: t["median_us"] for k, t in v.items()}
        line = f"{c['name']:7s} valid {c['validation']['passed']}"
        if "assemble_then_own" in med:
            saved = med["assemble_then_own"] - med["own_separate"]
            line += (f"; no-copy saves {saved:.0f} us vs assemble+own (assembly alone {med.get('assembly_only', 0):.0f} us)")
        line += f"; own kernel {fl / med['own_separate'] / 1e6:.0f} TFLOP/s"
        if "assemble_then_cudnn" in med:
            line += (f"; vs assemble+cuDNN: {med['assemble_then_cudnn'] / med['own_separate']:.2f}x "
                     f"({'faster' if med['own_separate'] < med['assemble_then_cudnn'] else 'slower'})")
        print(line)
        print(f"         kernel config: {c['params'].get('triton_config_name', c['params'].get('triton_config'))}; "
              f"cuDNN needed a contiguous v: {c['params'].get('cudnn_contiguous_v')}")
        if c["name"] == "T8192":
            tf = fl / med["own_separate"] / 1e6
            print(f"         >= 450 TFLOP/s at T = 8192: {'met' if tf >= 450 else 'not met'}; "
                  f"own kernel / cuDNN alone: {tf / (fl / med['cudnn_only'] / 1e6):.2f}"
                  if "cudnn_only" in med else "")

# %%
if INTERACTIVE and rec:
    import ipywidgets as w

    def show(variant):
        for c in rec["cases"]:
            if variant in c["variants"]:
                t = c["variants"][variant]
                print(f"{c['name']:7s} {t['median_us']:9.1f} us (p20 {t['p20_us']:.1f}, p80 {t['p80_us']:.1f})")

    w.interact(show, variant=w.Dropdown(options=list(rec["cases"][0]["variants"])))

# %% [markdown]
# ## What we learned
# - Assembling k is a memory-bound copy in front of a compute-bound kernel: small next to the attention
#   at long sequences, but a fixed per-layer tax that grows linearly with T and that a kernel reading the
#   separate tensors removes entirely (the "saves" column above against the assembly's own time).
# - Sharing k_pe across heads is free for the kernel: each program reads the [BLOCK_N, 64] tile of
#   k_pe it needs, L2 serves the other heads, and nothing is broadcast in memory. TMA reads the strided
#   views in place too: a 2-D window per view, one column offset per head.
# - Splitting the 192-dim dot into 128 (nope) + 64 (rope) costs one wgmma wait between the two dots
#   (the compiler chains them on one accumulator however they are written); the sweep's winner lives
#   with it.
# - The lever in the recorded sweep was the load path, not occupancy: K/V tiles by TMA with two tiles in
#   flight (3 stages) let one program per SM run the fatter 128 x 64 tiles, and that beat two programs
#   per SM on thin 128 x 32 tiles. With one tile in flight (2 stages) the same TMA kernel is among the
#   slowest: the depth of the ring matters more than anything else swept.
# - Two ideas that look good on paper lost in the measurement, and are kept as switches for the record:
#   the hand-pipelined scores (the TTGIR shows the overlap, the clock does not; not diagnosed yet) and the
#   lazy rescale (a CTA-wide max and a branch per tile cost more than the multiply they skip).
# - Where the kernel stands against cuDNN is in the TFLOP/s plot and the done-when lines above: the
#   saved copy is real, but cuDNN's attention itself is faster at long sequences. What is left is what
#   warp specialization (a producer warp for TMA, two consumer warpgroups ping-ponging softmax and GEMMs)
#   would close; the FP8 attention builds on this shape.
