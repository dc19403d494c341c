# %% [markdown]
# # 01 · NVFP4 on Hopper and the wo GEMM
#
# What you will learn here:
# - the NVFP4 format exactly: 4-bit E2M1 codes rounded to nearest-even on a grid of 8 magnitudes, one
#   E4M3 scale per 16 elements, one fp32 global scale, the 128x4 swizzled scale layout;
# - why it pays at decode on a GPU without FP4 tensor cores: the wo weight (7168 x 16384) shrinks from
#   234.9 MB (bf16) to 66.1 MB, and decode time is weight-read time;
# - each kernel step (quantize, dequantize, dequantize-then-cuBLAS, then the fused W4A16 GEMM from a first
#   `mma.sync` kernel to the warp-specialized wgmma kernel the records dispatch to at M <= 64) with its time
#   beside its bound, and where the fused kernel wins over cuBLAS bf16 and fp8;
# - where the targets stand on each card, and what holds the rest (the diagnostic sections);
# - what NVFP4 costs in accuracy against bf16 and fp8, with Gaussian activations and with outlier channels.
#
# Technology: the kernels are CUDA C++ compiled by NVRTC and launched through CuPy (`kernels/nvfp4.cu` for the
# quantizer; `kernels/wo_gemm.cu` for the `mma.sync` steps v1-v4 and v6, `kernels/wo_gemm_v5.cu` for v5, the
# kernel the dispatcher runs at M <= 64: a producer warp streams the weight into a shared-memory ring with bulk
# copies and TMA, consumer warpgroups decode it in registers for `wgmma`; `wo_gemm_v7.cu` / `wo_gemm_v8.cu` are
# measured steps that lost). Decode is bound by weight bytes, so every step is held against the weight-read
# bound; the diagnostic sections near the end say why the kernel is still above it.

# %% tags=["parameters"]
DEVICE = "auto"  # "auto", "cpu" or "cuda"
SMOKE = False  # small sizes (CI, laptops)
LIVE = None  # None: benchmark now on a GPU, the committed record on CPU; False: the committed record
INTERACTIVE = True  # widgets
M_STUDY = 16  # tokens in the CPU accuracy study
N_STUDY = 512  # output features in the CPU accuracy study (7168 on the GPU record)
K_STUDY = 2048  # input features in the CPU accuracy study (16384 on the GPU record)

# %%
from workbench import nbutil

dev = nbutil.banner(DEVICE)

# %% [markdown]
# ## The format
# A 4-bit code holds a sign and one of 8 magnitudes. Rounding is to nearest with ties to the even code, so
# 0.25 goes to 0, 0.75 to 1, 1.25 to 1, 1.75 to 2, 2.5 to 2, 3.5 to 4 and 5 to 4; anything above 6
# saturates to 6.

# %%
import torch

from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo
from workbench.viz import nvfp4 as vnv

print("E2M1 values by code:", nv.E2M1_VALUES.tolist())
vnv.fig_e2m1_grid().show()

# %% [markdown]
# Each block of 16 consecutive elements of a row gets an E4M3 scale
# `sf = e4m3_rn(g * max|block| / 6)`, with the global `g = 2688 / amax` (2688 = 6 * 448 maps the
# tensor's largest value to the largest code times the largest scale). A block's elements are then
# encoded as `e2m1_rn(x / (sf / g))`. The figure shows the first blocks of one row: each block's grid
# adapts to its own range.

# %%
x_demo = nv.make_inputs(1, 128, seed=0, device="cpu")
vnv.fig_block_scales(x_demo[0]).show()
q_demo = nv.quantize_reference(x_demo, "tensor")
print("global scale g =", float(q_demo.global_scale))
print("scale bytes of the first 8 blocks:", q_demo.scales[0].tolist(), "->",
      [round(v, 4) for v in nv.e4m3_decode(q_demo.scales[0]).tolist()])
print("codes of block 0:", nv.unpack_nibbles(q_demo.codes)[0, :16].tolist())

# %% [markdown]
# The scales go to GEMMs in the 128x4 swizzled layout (tiles of 128 rows x 4 scale columns, 512 bytes
# each, zero padding); communication uses the linear layout. The swizzle is a reshape and a permute:

# %%
sf_lin = q_demo.scales.repeat(130, 1)[:130, :5].contiguous()
sw = nv.swizzle_scales(sf_lin)
print(f"linear {list(sf_lin.shape)} -> swizzled {sw.numel()} bytes (pad128(130) * pad4(5) = {256 * 8})")
print("round trip exact:", torch.equal(nv.unswizzle_scales(sw, 130, 80), sf_lin))
print("offset of S[33, 2] =", nv.swizzled_sf_offset(33, 2, 8), "(tile 0, (33%32)*16 + (33//32)*4 + 2)")

# %% [markdown]
# ## The bytes argument
# At decode (a few to a few dozen tokens per attention-DP rank) the wo GEMM reads the whole weight for a
# handful of tokens, so its time is the weight bytes over the memory bandwidth.

# %%
from workbench.bench import recorded_ceilings

wb = {k: wo.weight_bytes(k) for k in ("bf16", "fp8", "nvfp4")}
for k, v in wb.items():
    print(f"{k:6s} weight {v / 1e6:7.1f} MB  ({wb['bf16'] / v:.2f}x less than bf16)")
rec_wo = nbutil.results("wo_gemm", dev, smoke=SMOKE, live=LIVE)
print(nbutil.describe(rec_wo, "wo_gemm"))
copy_TBps = (rec_wo or {}).get("device", {}).get("ceilings", {}).get("copy_TBps")
if copy_TBps is None:
    c = recorded_ceilings()
    copy_TBps = c.copy_TBps if c else None
vnv.fig_bytes(wb, copy_TBps).show()

# %% [markdown]
# ## The reference, on this machine
# `quantize_reference` is plain torch and exact: the same IEEE fp32 operations, in the same order, as the
# kernels, so the kernels' codes and scale bytes must match it bit for bit. A quantize-dequantize round
# trip of Gaussian rows loses about 9.5% in relative L2 (the 4-bit grid), cosine about 0.9955.

# %%
x_ref = torch.randn(64, 7168 if not SMOKE else 1024, generator=torch.Generator().manual_seed(1))
rt = nv.reference(x_ref, "row")
rel = float((rt - x_ref).norm() / x_ref.norm())
cos = float(torch.nn.functional.cosine_similarity(rt.flatten(), x_ref.flatten(), dim=0))
print(f"round trip, per-row global scale: rel-L2 {rel:.4f}, cosine {cos:.5f}")
ties = nv.make_tie_inputs(4, 64, device="cpu")
qt = nv.quantize_reference(ties, torch.tensor(1.0))
print("tie-heavy blocks: first block values / codes")
print((ties[0, :16].float() / nv.e4m3_decode(qt.scales[0, :1])).tolist())
print(nv.unpack_nibbles(qt.codes)[0, :16].tolist())

# %% [markdown]
# ## Kernel steps: quantize and dequantize
# `nvfp4_quantize_v1` runs one CTA per row (needed for the per-row dynamic scale); `v2` is grid-stride
# with four blocks per thread in flight. Both were limited by the integer pipe, not HBM: ~13 integer
# ops per element against a budget of ~10 at copy speed. `v3` rounds on the fp32 pipe:
# `a = min(|x| * qscale, 6)`, `r = (a + M) - M` with `M = 2^(max(e(a), 0) + 22)` (taken from a's bits by one
# integer add-and-max and a mask) is RNE on the E2M1 grid
# (the adder's ties-to-even is the tie table), the bits of `r * 2^-126` are the code at bit 22, signs of 8
# elements come from two PRMTs, and with a per-tensor scale the block multiplier comes from a 256-entry
# table. In the swizzled layout v1-v3 scatter each warp's 32 scale bytes over 8 places 512 bytes apart.
# `v5` keeps v3's encoder and coalesced row reads, but
# a CTA owns 128 rows x NB scale blocks, so its scale bytes are NB/4 whole 128x4 tiles: they are gathered
# in shared memory and written as one contiguous run (padding zeros included). Small NB keeps the last
# wave short. The `_v5_nb..` rows are its configs (`s`: a lane pair shares a block; `quant_v5_default`: (8, 4) on
# the H100, (16, 2) on the H200). `v11` (per-tensor scales) keeps v5's tile and cuts the instructions per element
# (the diagnostic below): its `_v11_nb..` rows are its configs. Each card's default kernel per layout
# (`cupy_quantize_swizzled`, `cupy_quantize_linear`) is the fastest measured there: `quant_swizzled_kernel` (v5 on
# the H100, v11 on the H200) and `quant_linear_kernel` (v1 on the H100, v11 on the H200). All are checked
# bit-exact against the reference (random inputs, every tie, huge and tiny values, K not a multiple of 64)
# in the same run that times them. Bound: read bf16 x, write codes and scales, at the measured copy
# bandwidth. The lines under the tables give each card's record: the default and the fastest kernel.
# Dequantize (`cupy_dequantize_bf16`, each card's `dequant_kernel`): v1 runs a thread per 16-element block; v2 (the
# H200's) a lane per 16 output bytes, so every warp store fills whole 32-byte sectors, and decodes without branches
# (a code's magnitude bits at bit 22 are the fp32 bits of `e2m1 * 2^-126`).

# %%
from workbench import viz

rec_q = nbutil.results("nvfp4", dev, smoke=SMOKE, live=LIVE)
print(nbutil.describe(rec_q, "nvfp4"))
if rec_q:
    viz.variant_bars(rec_q, [c["name"] for c in rec_q["cases"]], title="NVFP4 quantize / dequantize vs bound").show()
    viz.table(viz.speedup_table(rec_q), title="quantize / dequantize: baseline is the torch reference").show()
for rq in nbutil.card_records("nvfp4", rec_q):  # this record, then the committed runs of other cards
    print(f"{rq['device']['name']} (commit {str(rq['git_commit'])[:7]}):")
    for row in vnv.quantize_card_rows(rq):
        print(f"  {row['case']}: default {row['default']} at {row['default % of bound']}% of the copy-bandwidth "
              f"bound, best {row['best']} at {row['best % of bound']}%; exact: {row['exact']}")

# %% [markdown]
# ### The quantizer on the H200 (diagnostic, twentieth pass)
# The lines above put each card's quantizer beside its bound: the H100's near it, the H200's, whose memory is faster
# for the same SMs, further below. `scripts/gpu_quant_v6.py` (removed afterwards; the commits are in the table)
# timed the v5 configs beside experimental builds, every one that writes codes checked bit-exact first:
# - `_diag_no_encode` twins do the same loads and stores with the encode replaced by a xor: the access
#   pattern's own floor;
# - v6 keeps the next row step's loads in registers while it encodes one (`_nopf`: v5's order), at the number of
#   CTAs per SM in `minb`; v6a streams the row steps through a `cp.async` ring in shared memory;
# - `_lean` computes the E2M1 rounding step's power of two with one integer add-and-max instead of a max, a mask
#   and a multiply: one instruction per element fewer, now in `nvfp4.cu` for v3 and v5.
#
# The lines under the table compare the floor with the fastest v5 config, and each `_lean` build with its twin
# without it. So the encode, not the memory pattern, costs the H200 the rest, and fewer instructions per element
# pay. No v6 build beat v5's (16, 2), but v6 without the prefetch was itself slower than v5 by a margin we did not
# explain, so what the prefetch alone is worth stays open; v6a's ring was far slower, even without the encode.
# Rows are this diagnostic's last run (one device call); the notes have all three.

# %%
quant200 = nbutil.diagnostic("quant_v6_h200")
if quant200:
    q_diag = vnv.quant_diag_rows(quant200)
    viz.table(q_diag, title=f"Quantizer builds, fastest first ({quant200['device']['name']})").show()
    for case, line in vnv.quant_diag_summary(q_diag, {"no-encode floor": "diag", "v5": "^v5"}).items():
        print(line)
        us = {r["build"]: r for r in q_diag if r["case"] == case}
        for b in us:
            if b.endswith("_lean") and b.removesuffix("_lean") in us:
                twin = us[b.removesuffix("_lean")]["us"]
                print(f"  {b}: {us[b]['us']} us against {twin} without the lean step "
                      f"({100 * (twin - us[b]['us']) / twin:.1f}% less time)")

# %% [markdown]
# ### v11: fewer instructions per element (diagnostic, twenty-first pass)
# Nsight Compute on v5 at [8192, 7168] (the `ncu` lines below) found it issue-bound on the H200: most issue slots
# busy, about 17 instructions per element (warp instructions x 32 / elements), while its no-encode twin moves the
# same bytes with a third of them. Feeding the encoder differently did not help: v9 streams each CTA's tile into
# shared memory with bulk copies and v10 does so persistently; v9's no-encode twin ran at 93-99% of the copy bound,
# but with the encode both ran far slower than v5 (data in the diagnostic's earlier runs). What paid was removing
# instructions (`nvfp4_quantize_v11`):
# - the E2M1 step by one FMA: with `M' = M * 2^-126`, `fma(a, 2^-126, M') - M'` is exactly `r * 2^-126`, the code
#   at bit 22 (one FMA and one add instead of two adds and a multiply);
# - the code fields summed, not or-ed (disjoint bits), so each shift and add is one LEA.HI;
# - the clamp at 6 on bf16 pairs: `min(|x|, xc)` with `xc = bf16(6 / q)` per scale byte, exact because any scaled
#   value below 7 rounds to at most 6 and `fl(xc * q)` is within 2^-8 of 6;
# - on tiles inside the tensor, no bounds checks, pointers advanced by strides, and one table load per block for
#   both `q` and `xc`.
#
# The table is the last run of `data/diagnostics/quant_v11_h200.json` (every build that writes codes checked
# bit-exact first; the inputs include saturated blocks, E4M3-subnormal scales and a scale of 2^110); the lines
# under it compare v11 with v5 and the no-encode floor, then list the profiler's counts.

# %%
quant11 = nbutil.diagnostic("quant_v11_h200")
if quant11:
    q11 = vnv.quant_diag_rows(quant11)
    viz.table(q11, title=f"Quantizer builds v5 / v8 / v11, fastest first ({quant11['device']['name']})").show()
    for line in vnv.quant_diag_summary(q11, {"v11": "^v11", "v5": "^v5", "no-encode floor": "diag"}).values():
        print(line)
    ncu_bound = quant11["runs"][-1]["cases"]["quantize_8192x7168"]["bound_us"]
    print(f"Nsight Compute, one launch each at [8192, 7168] (copy-bandwidth bound {ncu_bound} us):")
    for k in quant11["ncu_8192x7168"]:
        print(f"  ncu {k['kernel']:32s} {k['duration_us']:6.2f} us, {k['instructions_per_element']:5.2f} instructions "
              f"per element, issue slots busy {k['issue_active_pct']:.0f}%, DRAM {k['dram_throughput_pct']:.0f}% of peak")

# %% [markdown]
# ## Kernel steps: the wo GEMM
# 1. `cublas_bf16`: torch `x @ W^T` with the bf16 weight (the baseline).
# 2. `torch_fp8`: `torch._scaled_mm` with fp8 e4m3 weight and activations, per-tensor scales (M padded
#    to 16, weight column-major); the activations are quantized beforehand, so this is fp8's best case.
# 3. `nvfp4_dequant_cublas`: dequantize the NVFP4 weight to bf16, then cuBLAS: it writes and re-reads
#    the bf16 weight, so it can only lose at decode.
# 4. `w4a16_mma_v1`: the fused kernel. The weight is the `mma.sync` A operand (16 weight rows per tile),
#    the tokens the n8 columns, so 1..8 tokens cost one tile and each decoded weight serves all token
#    tiles. Codes are decoded in registers: the bits `(nibble & 7) << 6 | sign << 15` are the bf16
#    `e2m1 * 2^-126`, one bf16 FMA by `sf * 2^63` gives the exact product, and the k order inside a
#    fragment is permuted so both halves of a bf16x2 come out of one shift-and-mask. fp32 accumulate,
#    split-K with a self-cleaning workspace, `2^63 / g` in the epilogue.
# 5. `w4a16_mma` (v3, default config): v2 prefetched the next tile into registers; v3 keeps a ring of
#    weight tiles in shared memory filled by `cp.async`. Neither beat v1 by much.
# 6. `w4a16_v4`: the weight is rewritten ONCE at load time (`prepare_weight`) into the order the kernel
#    consumes: per 16-row tile and 512-k unit, 9 contiguous 16-byte chunks per lane (8 of codes, 1 of
#    scales), so a warp streams it with fully coalesced loads and holds the next unit in registers;
#    each lane owns one 16-element scale block per row (the mma k order is permuted to make that so),
#    the nibbles sit where 1-4 integer ops produce each bf16x2, and the scale byte is re-encoded so its
#    bf16x2 is one PRMT and one IMAD. The grid is "stream-K": every CTA gets an equal share of the
#    (tile group, k unit) work, partial sums meet in an fp32 workspace, the last contributor of a tile
#    writes bf16. Every kernel/grid candidate is validated, then timed (`params.v4_tuning_us`).
# 7. `w4a16_v6` (M <= 8): v4's warps fed by a producer warp that streams the same weight units into a
#    shared-memory ring with `cp.async.bulk` (and the unit's x rows beside them), with 1-4 independent
#    accumulation chains per warp (`params.v6_tuning_us`). Diagnostic builds that only stream the ring,
#    or stream and decode, run much closer to the bound than the full kernel (measurements in
#    docs/notes_wo_gemm.md): the mma, x and the end of the kernel cost the rest. `v6_nt2` / `v6_nt4`
#    builds (M <= 16 / 32) stage 16 or 32 x rows per stage and feed each decoded weight fragment to 2 or
#    4 token tiles of mma.sync: correct, but slower than the wgmma kernel v5 at M = 32.
#    `_red` configs (v5 and v6) end each CTA's share with fire-and-forget `red.add.v4` of fp32 partials
#    (lane pairs swap halves of their fragments so each lane adds four contiguous columns) and leave the
#    bf16 conversion to a small `wo_finalize` kernel launched with PDL (it transposes the workspace
#    through shared memory so its stores run along the output rows); that makes handing out
#    work dynamically cheap (`_s0{n}_g{k}`: the first n units of an equal share are static, then k units
#    at a time from a global counter), which evens out SMs that the saturated memory system serves at
#    different rates.
# 8. `w4a16_v5` (M <= 64): warpgroup tensor cores. The producer warp streams the weight (bulk copy) and
#    the x tile (TMA, 128-byte swizzle) into the ring; consumer warpgroups decode into `wgmma`'s register
#    A operand and read x as the shared-memory B operand, so x is read once per CTA and unit instead of
#    once per 16 weight rows. It uses its own stream layout with the natural k order inside each k16 step
#    (`wo_gemm_v5.prepare_stream_v5`, built once per weight); `_grp` builds read it grouped by unit, so a
#    unit's tiles are one contiguous run of memory. Configs are tuned per M like v4
#    (`params.v5_tuning_us`), `_red` builds included. `_lean{n}` builds do the same math with fewer
#    instructions per decoded weight; n is a sum of: 1, the wgmma descriptors precomputed (the compiler
#    otherwise rebuilds each one from its address); 2, the stream's scales read as "scale pairs" (one LOP3
#    turns a row's scale word into the bf16x2 scales of two k16 steps, and HMUL2's half swizzle picks one,
#    where the plain stream spends a PRMT and a LEA per step and row); 4, the next 64-k chunk's words loaded
#    from shared memory one chunk ahead; 8 (`_grp` builds), a unit's weight as one bulk copy instead of one
#    per 16-row tile; 16, that prefetch issued after the chunk's first wgmma group; 32, a full barrier per
#    64-k chunk (64: each chunk copied in 4-tile pieces); 128, the rotate word layout (each code's bits placed
#    so that three fragment registers come out of one rotate and one mask, the fourth out of a mask, one
#    multiply by 2^2 + 2^7 + 2^12 and a mask: 8 integer instructions per code word instead of 11); 256, the
#    cross-unit prefetch (the next stage's barrier tested during a unit's last chunk, its first words read
#    then); 512, one full barrier per stage and warpgroup; 1024, the row-group test by a multiply-high; 2048
#    (`_red` builds), the fragment-major workspace: each 16-row tile's partials in the order the lanes hold
#    them, so one warp's `red.add.v4` covers 512 contiguous bytes (four whole lines) instead of 16 rows, and
#    `wo_finalize` reads that order; 4096 / 8192 (the ramp), the producer issues one / two units, then waits for
#    stage 0 to fill before it issues the rest; 16384 (with 8, static work), the CTA's first unit issued by thread 0
#    in the kernel's prologue, before the producer warp reaches its own code (fetched cold after the consumers').
#    The fifteenth pass's H200 builds are lean 3215 = 2048 + 1024 + 128 + 8 + 4 + 2 + 1; the sixteenth pass's record
#    runs lean 19599 = 3215 + 16384.
#    `_cl{n}` builds end without the fp32 workspace: the n CTAs of a cluster hold one row group over n slices
#    of k and sum them through distributed shared memory (`params.rejected_configs` lists the ones this GPU
#    cannot run in one wave of clusters).
# 9. `nvfp4_cached_bf16`: cuBLAS on an exact `e2m1 * sf` bf16 weight cached at load time, `1/g` as
#    cuBLAS's alpha: cuBLAS speed at every M, at the cost of keeping the bf16 weight too
#    (`params.cached_bf16_extra_bytes`).
# 10. `optimized`: the dispatcher `wo_nvfp4`: at each M the fastest validated fused kernel of the run
#    (v4-v9p) where it beat the cached-bf16 path, the cached-bf16 path elsewhere (`params.dispatch`).
# 11. `optimized_pdl`: the same dispatcher with `enable_pdl=True`: the v5-v9p GEMM is launched with
#    programmatic dependent launch, so its first unit of weight copies goes out while the previous kernel
#    finishes; it reads x and touches the workspace only after `griddepcontrol.wait`. In this benchmark the
#    previous kernel is the previous call's `wo_finalize`, so the time per call includes that overlap (in a
#    model it would be the kernel that produced x). Six back-to-back PDL calls are validated each run.
# 12. `w4a16_v7` (M = 32, 64; a measured step, not dispatched): the product turned around. v5's
#    diagnostic build without any decode (`_diag_no_decode`) ran as slowly as the full kernel (the
#    diagnostic table below); the hypothesis was a fixed cost per register-A instruction, so
#    v7 makes the tokens (padded to 64) wgmma's M and the weight rows its N = 128: x is the register A
#    operand (ldmatrix), the weight is decoded into shared memory with `stmatrix` in the 128-byte-swizzled
#    layout wgmma reads as B, one instruction per 128 x 16 weights instead of 64 x 16. Each consumer
#    warpgroup decodes its rows, meets its warps at barriers, then multiplies (`wo_finalize_tm` converts the
#    token-major workspace). A microbenchmark afterwards (scripts/gpu_wgmma_rate.py, the last table below)
#    refuted the hypothesis: alone, that instruction runs at the tensor peak once two warpgroups issue.
# 13. `w4a16_v8` (M = 32, 64; a measured step): v7's product, warp-specialized: a decoder warpgroup fills
#    two decoded slots, two MMA warpgroups (`setmaxnreg` gives them the registers for 64 accumulators) multiply them
#    with both operands in shared memory, mbarriers between. With one decoder warpgroup the decode is the
#    limit; two do not fit the register file at this accumulator size (docs/notes_wo_gemm.md, eighth pass).
# 14. `w4a16_v9p` (M <= 8): row-owned CTAs, one kernel per call. Each CTA owns 6 or 7 slices of 8 weight rows over
#    the full K (the weight as the `mma.sync` A operand, two slices per m16 tile, an odd count's last slice alone),
#    sums its warps' partials in shared memory and writes bf16 itself: no workspace, no atomics, no `wo_finalize`.
#    Its stream is laid out for the launch grid (`wo_gemm_v9.prepare_stream_v9p`). `_er` builds copy each warp's
#    chunk of a ring stage to registers and free the stage before the math; with ordinary launches the producer
#    copies each stage's x before its weight. The section on row-owned CTAs below has its A/B runs, its timelines and
#    the first design (`w4a16_v9`, the weight as the B operand).
#
# Every variant is validated in the same run: rel-L2 against the fp32 GEMM of the dequantized operands
# rounded to bf16 (tolerance 1e-3 for the fused kernel; 5e-3 for cuBLAS, which may reduce split-K
# partials in bf16). Times are CUDA-graph replays rotating over weight copies larger than 3x L2.

# %%
if rec_wo:
    viz.table(viz.speedup_table(rec_wo), title="wo GEMM: cuBLAS bf16 vs the NVFP4 dispatcher").show()
    vnv.fig_time_vs_bound(rec_wo).show()
    vnv.fig_speedup_vs_m(rec_wo).show()
    rows = vnv.wo_card_rows([rec_wo], ms=None)  # every M of the record, its time beside its bound and both baselines
    viz.table(rows, title=f"wo GEMM per M on {rec_wo['device']['name']} (ratios > 1: the NVFP4 dispatcher is faster)").show()
    fused = []  # each fused step's best validated config at each M, beside the same bound
    for c in sorted(rec_wo["cases"], key=lambda c: c["params"]["M"]):
        for fam in ("v4", "v6", "v5", "v7", "v8", "v9p"):
            t = c["variants"].get(f"w4a16_{fam}")
            if t:
                fused.append({"M": c["params"]["M"], "kernel": f"w4a16_{fam}", "config": c["params"].get(f"{fam}_config"),
                              "us": round(t["median_us"], 1), "bound us": round(c["bound_us"], 1),
                              "% of bound": round(100 * c["bound_us"] / t["median_us"])})
    viz.table(fused, title="fused W4A16 steps: best validated config per M, time beside the bound").show()

# %% [markdown]
# ### The same kernels on two cards
# The record above comes from one card; the committed runs of other cards (`data/diagnostics/wo_gemm_record_*.json`,
# full records of their own commit) sit beside it here, each with the ratios of its own run. The H200 reads HBM
# about 1.4x faster than the H100, so cuBLAS bf16, which streams 235 MB, gains about that much (the line under the
# table); the fused kernel streams 66 MB but also pays a fixed ramp, its decode and wgmma, and `wo_finalize`'s tail,
# which a faster memory does not shorten, so its ratios are lower on the H200. The configs differ too: each run
# tunes its own (`fused config`), and `wo_nvfp4` uses the table of the card it runs on (`data/tuned/wo_gemm.json`).

# %%
wo_recs = nbutil.wo_records(rec_wo)
if wo_recs:
    card_rows = vnv.wo_card_rows(wo_recs)
    viz.table(card_rows, title="wo GEMM at M <= 64 on each card (each row's ratios from its own run)").show()
    for M in (1, 64):
        per_card = [r for r in card_rows if r["M"] == M]
        print(f"M = {M}: " + "; ".join(f"{r['card']}: cuBLAS bf16 {r['cuBLAS bf16 us']} us, fused {r['optimized us']} us "
                                       f"(bound {r['bound us']} us)" for r in per_card))

# %% [markdown]
# ### What bounds v5 at M = 32 and 64 (diagnostic measurements, not records)
# `data/diagnostics/wo_trace_diag_h100.json` (scripts/gpu_wo_trace.py --diag --fin): v5's diagnostic builds
# beside the recorded one, each one's GEMM kernel alone (CUPTI trace) and the call (graph replay). `_diag_stream`
# only streams the ring, `_diag_decode` also decodes, `_diag_no_decode` runs the wgmma on the raw code words
# (the others as in docs/notes_wo_gemm.md); they compute no output and are never validated. `_fin` is the
# in-kernel finalize (validated). `data/diagnostics/wgmma_rate_h100.json` (scripts/gpu_wgmma_rate.py): the SM
# cycles one `wgmma.m64nNk16` takes alone, beside the cycles its FMA work needs at the dense peak; its `decode`
# rows put v5's decode of each group's A registers into the loop (no stream): the lines under the table compare
# them with the same loop without the decode. At N = 32 the decode's integer work and its bf16 multiplies do not
# hide behind the register-A wgmma the way the issue slots and the tensor pipe would allow; at N = 64 each part
# alone nearly does (notes, tenth pass). Its `with_stream` rows run the same loops beside a copy-engine stream into
# the same shared memory (v5's M = 32 stages), B read from a fixed tile or from the ring: the lines after the table.
# `data/diagnostics/wo_trace_flush_h100.json` (fourteenth pass, the same script) adds the recorded builds' twins whose
# last step, the flush of the fp32 partials, uses plain stores (`_diag_plain_stores`) or writes nothing
# (`_diag_no_partials`): what the flush and its atomics cost, beside the stream alone (`_diag_stream`).
# `data/diagnostics/wo_trace_diag_h200.json` (fifteenth pass) is the same measurement on an H200 with the H200
# record's builds (lean 3215) and their twins. There the stream alone (`_diag_stream`), with `wo_finalize`'s tail, already takes
# longer at M = 64 than 3x cuBLAS bf16 allows (the lines under the tables compare them with the trace's own cuBLAS
# bf16, whose time at M = 8 moved by ~10% between runs and machines). Each row's bound is its own card's.

# %%
trace, rate = nbutil.diagnostic("wo_trace_diag_h100"), nbutil.diagnostic("wgmma_rate_h100")
flush, trace200 = nbutil.diagnostic("wo_trace_flush_h100"), nbutil.diagnostic("wo_trace_diag_h200")
for label, tr in (("", trace), (" (fourteenth pass: the flush)", flush), (" (fifteenth pass)", trace200)):
    if not tr:
        continue
    bounds = nbutil.wo_bounds(wo_recs, tr["device"]["name"])  # the weight-read bounds of the card it ran on
    diag_rows = []
    for m, case in tr["cases"].items():
        for name, e in case["variants"].items():
            if name.startswith("cublas"):
                continue
            k = e["trace"]["kernels"] if isinstance(e.get("trace"), dict) else {}
            gemm = next((t["median_us"] for kn, t in k.items() if "w4a16" in kn), None)
            tail = nbutil.finalize_tail_us(e.get("trace"))  # wo_finalize's end after the GEMM's end
            diag_rows.append({"M": int(m), "build": name, "GEMM kernel us": round(gemm, 2) if gemm else None,
                              "finalize tail us": round(tail, 2) if tail is not None else None,
                              "call us": round(e["replay_us"], 2), "bound us": round(bounds.get(int(m), float("nan")), 2)})
    viz.table(diag_rows, title=f"v5 diagnostic builds{label} ({tr['device']['name']})").show()
    if tr is trace200:  # the stream-only floor of this design against what 3x cuBLAS bf16 (same trace run) allows
        bf16 = {int(m): c["variants"]["cublas_bf16"]["replay_us"] for m, c in tr["cases"].items()}
        for r in diag_rows:
            if r["build"].endswith("_red_diag_stream_grp_lean3215"):  # the recorded builds' streams
                print(f"{tr['device']['name']} M = {r['M']}: the stream alone {r['GEMM kernel us']} us of GEMM kernel, "
                      f"its call {r['call us']} us with wo_finalize's tail {r['finalize tail us']} us; cuBLAS bf16 "
                      f"{bf16[r['M']]:.2f} us in the same run, so 3x needs a call of {bf16[r['M']] / 3:.2f} us or less")
if rate:
    viz.table([{**r, "FMA cycles at peak": 64 * r["N"] * 16 // 2048} for r in rate["rows"]],
              title=f"wgmma.m64nNk16 alone: SM cycles per instruction ({rate['device']['name']})").show()
    # the decode in the loop (v5's rotate decode of each group's A registers, or a part of it) against the same
    # loop without it, one group in flight unless stated
    modes = {"decode": "the decode", "decode_int_only": "its integer part only", "decode_hmul2_only": "its HMUL2 only",
             "decode_unused": "the decode into registers no wgmma reads"}
    shape = lambda r: (r["N"], r["warpgroups"], r["group"])  # noqa: E731
    plain = {shape(r): r["cycles_per_wgmma_per_sm"] for r in rate["rows"]
             if r["A"] == "registers" and not any(r.get(m) for m in modes) and not r["lds_before_fence"]}
    for r in rate["rows"]:
        mode = next((m for m in modes if r.get(m)), None)
        if mode:
            flight = r.get("groups_in_flight", 1)
            print(f"N = {r['N']}, {r['warpgroups']} warpgroup(s), groups of {r['group']}"
                  f"{f', {flight} in flight' if flight != 1 else ''}: {r['cycles_per_wgmma_per_sm']} SM cycles per wgmma "
                  f"with {modes[mode]}, {plain.get(shape(r), 'not measured')} without, "
                  f"{64 * r['N'] * 16 // 2048} at the tensor peak")
    alone = {(r["N"], r["warpgroups"], r["decode"]): r["cycles_per_wgmma_per_sm"] for r in rate["rows"]
             if r["A"] == "registers" and r["group"] == 2 and r.get("groups_in_flight", 1) == 1
             and not r["lds_before_fence"] and (r["decode"] or r["a_rewritten"])}
    for r in rate.get("with_stream", []):
        print(f"N = {r['N']}, {r['warpgroups']} warpgroups, {'with' if r['decode'] else 'without'} the decode, beside the "
              f"stream{', B from the ring' if r['b_from_ring'] else ''}: {r['cycles_per_wgmma_per_sm']} SM cycles per wgmma "
              f"({alone.get((r['N'], r['warpgroups'], r['decode']), 'not measured')} without the stream, "
              f"{64 * r['N'] * 16 // 2048} at the tensor peak)")

# %% [markdown]
# ### Inside one CTA: the timeline builds
# The same kernels with clock stamps (`PROF`, `scripts/gpu_wo_timeline.py`): per unit, when each warpgroup asks
# for its stage, when the stage is full, when its last group retires and when the stage goes back to the producer;
# per sampled group, its decode and issue against its wait (eleventh pass: no stamped build is serialized by ptxas
# any more; the ninth pass's were, see the notes). The stamps perturb the kernel, so each row also
# carries its stamp-free twin timed as the benchmark does; use the cycles for where the time goes inside a build,
# not to rank builds. Each row carries the weight-read bound, per call and per unit (in cycles at the build's clock:
# the period to hold against it). The figure shows four CTAs of the M = 32 lean 7 build (a tie with the recorded choice): a ramp while the first stage of
# every SM arrives, then units in which warpgroup 0 mostly works and briefly waits (the line below says how much).
# Rows: lean 7 (M = 32) and lean 3 (M = 64) are the consumers the records were tuned around; lean 519 / 515 add one
# full barrier per warpgroup (LEAN bit 9), lean 1031 / 1027 the row-group test without a division (bit 10): compare
# their busy cycles per unit with lean 7 / 3 (notes, eleventh pass).

# %%
timeline = nbutil.diagnostic("wo_timeline_h100")
if timeline:
    tl_rows = vnv.timeline_rows(timeline, nbutil.wo_bounds(wo_recs, timeline["device"]["name"]))  # its card's bounds
    viz.table(tl_rows, title=f"v5 timeline builds, SM cycles ({timeline['device']['name']})").show()
    vnv.fig_cta_timeline(timeline).show()
    r32 = next(r for r in tl_rows if r["build"] == timeline["sample_ctas"]["build"].removesuffix("_prof"))
    print(f"{r32['build']}: ramp {r32['ramp']:.0f} cycles, then per unit busy {r32['busy / unit']:.0f} of a "
          f"{r32['period']:.0f}-cycle period ({100 * r32['busy / unit'] / r32['period']:.0f}%), "
          f"span {r32['span (cycles)']:.0f} cycles at {r32['GHz']} GHz")

# %% [markdown]
# ### The L2 state at a call's start (diagnostic)
# The record times each call right after the previous one, on weights used in turn so no call finds its weight in
# L2. Everything small (kernel code, workspace, counters) may still be left by the previous call. `scripts/gpu_wo_ab.py
# --baselines` times the recorded builds, cuBLAS bf16 and torch fp8 in the same rounds; with `--scrub` L2 is evicted
# before every call (x rewritten, as its producer would leave it) and the scrub's own time subtracted. The table puts
# both protocols of one device call side by side (`data/diagnostics/wo_ab_h100.json`). A LEAN value means what it
# meant at its run's commit (the column): at 270d96e bits 11 / 12 were the L2 cache policies the thirteenth pass
# measured and reverted, from af54ec5 on bit 11 is the fragment-major workspace and bit 12 a measured-and-reverted
# step of each pass (the notes say which).

# %%
ab = nbutil.diagnostic("wo_ab_h100")
if ab:
    viz.table(vnv.ab_protocol_rows(ab), title=f"Ratios with and without a scrubbed L2 ({ab['device']['name']})").show()

# %% [markdown]
# ### The H200's own tuning (fifteenth pass)
# The A/B runs behind the H200's builds (`data/diagnostics/wo_ab_h200.json`, scripts/gpu_wo_ab.py, every build validated):
# the builds the H200's first record chose (lean 1159 at M <= 8, 15 at M = 32, 3203 at M = 64) beside the same builds
# with the bits the H100's choices add, each beside the weight-read bound (the A/B's; at M = 64 the record's bound is
# the bf16 flops one). Compare rows within one commit only (one device call each). The record's
# `v5_tuning_us` tables then timed all of them again, with lean 3215 (all the bits) fastest at every M <= 64.

# %%
ab200 = nbutil.diagnostic("wo_ab_h200")
if ab200:
    viz.table(vnv.ab_rows(ab200, "Fifteenth pass"), title=f"A/B of v5 builds ({ab200['device']['name']})").show()

# %% [markdown]
# ### The H200's consumer, x, and the start of the call (sixteenth pass)
# On the H200 the recorded builds are held by their consumers, not by the weight stream: in the traces the stream
# alone runs microseconds faster than the full GEMM kernel at every M. Each question below was measured in one device
# call (`data/diagnostics/wo_trace_x_h200.json`, `wo_timeline_h200.json` and the sixteenth-pass runs of
# `wo_ab_h200.json`):
# - **How much of that is x?** At M = 64 every stage carries 32 KB of x beside 18.4 KB of weight. DIAG twins of the
#   recorded builds drop x's copies from the stream alone (DIAG 12) and from the full kernel (DIAG 5); the table gives
#   the GEMM kernel's CUPTI time. (At M = 64 the full build keeps two accumulator sets and its twins one, a tie in the
#   record's tuning.) x costs the stream alone a lot at M = 64 but the full kernel much less: the consumer holds it.
# - **Inside one CTA** (the timeline builds of lean 3215): a consumer period per unit above the weight bound's cycles
#   per unit means the consumer, not the stream, sets the pace; the ramp is the cycles until the first stage is full.
#   The lines under the table give when the producer warp starts and when its first copy goes out: its code sits
#   after the consumers' in the kernel and is fetched cold in every call.
# - **The A/B runs:** the ramp (LEAN bits 12-13: the producer issues one or two units, then waits for stage 0),
#   seven consumer warpgroups at M <= 8 (448-row units, 3 stages; reverted), the CTA's first unit issued by thread 0
#   in the kernel's prologue (LEAN bit 14, lean 19599 on lean 3215 and 27791 on 11407), and its first STAGES units so
#   (bit 15, lean 52367; reverted). Bit 14 is what the record now runs at every M <= 64; issuing every stage early
#   instead loses: stage 0 lands first when it goes out alone.

# %%
trace_x = nbutil.diagnostic("wo_trace_x_h200")
if trace_x:
    viz.table(vnv.x_share_rows(trace_x, bounds_us=nbutil.wo_bounds(wo_recs, trace_x["device"]["name"])),
              title=f"x's copies in the GEMM kernel, lean 3215 ({trace_x['device']['name']})").show()
timeline200 = nbutil.diagnostic("wo_timeline_h200")
if timeline200:
    viz.table(vnv.timeline_rows(timeline200, nbutil.wo_bounds(wo_recs, timeline200["device"]["name"])),
              title=f"v5 timeline builds of lean 3215, SM cycles ({timeline200['device']['name']})").show()
    for b in timeline200["builds"].values():
        last = b["runs"][-1]
        print(f"M = {b['M']}: the producer starts {last['producer_start']:.0f} cycles into the CTA and issues its first "
              f"copy at {last['first_issue']:.0f}; the first stage is full at {last['ramp']:.0f} ({last['ghz']} GHz)")
if ab200:
    viz.table(vnv.ab_rows(ab200, "Sixteenth pass"), title=f"A/B of v5 builds, sixteenth pass ({ab200['device']['name']})").show()

# %% [markdown]
# ### Fewer consumer instructions at M = 1: the block-diagonal x tile (seventeenth pass, measured and reverted)
# At M = 1 seven of the m64n8 wgmma's eight token columns carry nothing. The block-diagonal build (LEAN bit 15) used
# them: x, times 2^64, went into the tile with 16-k block b of a unit in column b % 8 and zeros elsewhere, so the
# wgmma kept one fp32 sum per block for eight blocks at a time, and each block's scale multiplied that sum once per row
# instead of every decoded weight pair. The consumer decoded the weight without its scale (e2m1 times 2^-126, the
# code +-0.5 a bf16 subnormal, which the tensor cores took exactly: a one-instruction check on the H200 and the GPU
# tests of all 16 codes): by a count of the source about 50 of ~230 instructions per unit and warp fewer (not checked
# in the SASS). Three A/B runs, one device call each,
# with every build validated (the runs marked "Seventeenth pass" in `wo_ab_h200.json`): the first lost 1.3 us to its
# x path (each unit's x loaded when its stage was claimed), loads four units ahead gave back 0.3 us, and the first
# five units' x stored by a consumer warp around the CTA barrier another 0.7 us; it still lost (lean 60559 against
# the recorded 27791 in the last run). So at M = 1 the consumer's instruction count is not what holds the call.

# %%
if ab200:
    viz.table(vnv.ab_rows(ab200, "Seventeenth pass"),
              title=f"A/B of the block-diagonal builds at M = 1 ({ab200['device']['name']})").show()

# %% [markdown]
# ### mma.sync consumers, refills from the consumers, a leaner producer, and the SM clock (eighteenth pass)
# Four more changes aimed at M <= 8 on the H200, each measured in one device call against the recorded builds and
# reverted (the runs marked "Eighteenth pass" in `wo_ab_h200.json`):
# - **mma.sync consumers** (LEAN bit 16, lean 93327): each warp multiplies its decoded fragments with
#   `mma.sync.m16n8k16` (the same A fragment and accumulator layout as its share of the wgmma), x's fragments read by
#   `ldmatrix`, with no warpgroup fence, no wait for the group two back, and the stage released at the unit's end.
#   A tie at M <= 8; at M = 32 it loses 28%, where its 256 mma.sync per SM sub-partition and unit would run at
#   about 0.3 of wgmma's dense rate if they set the pace (notes).
# - **The refill issued by the consumer warp that releases a stage last** (LEAN bit 17, lean 150671): the timeline
#   below has the producer warp issue a released stage's next unit ~820 cycles after the release. It lost 2.8-7.5 us;
#   the full wait it needed before each unit's first wgmma (so ptxas would not serialize the pipeline) explains part.
# - **The producer's per-unit path without divisions** (LEAN bit 18): within +-0.4 us either way.
# - **The ring's depth:** the recorded builds on 4 and 3 stages instead of 5. At M = 1 four stages tie five, so a
#   deeper ring (x as one row per stage would make room for a sixth) would not help; at M = 8 the fifth is worth ~0.5 us.
#
# Then the clock. `scripts/gpu_wo_power.py` replays each build for 3 s while nvidia-smi streams clocks, power and
# clock-event reasons, and a probe beside the GEMM counts SM cycles against the global timer. The table is its last
# run: every kernel that keeps the tensor cores busy (ours and cuBLAS's) runs at ~1.81-1.85 GHz while nvidia-smi says
# 1980 MHz with no reason given; the stream-only and decode-only twins run at 1.96-1.98. From M = 8 up the fused kernel
# draws ~693 W and, run for seconds, meets the power cap (1.5-1.6 GHz at M = 32 and 64), so its sustained ratios to
# cuBLAS bf16 (column "cuBLAS bf16 / this", beside each M's weight-read bound) sit below the record's bursts there, and
# above them at M = 1. The timelines under it are the lean 3215 n8 build at M = 1 and 8, in SM cycles.

# %%
if ab200:
    viz.table(vnv.ab_rows(ab200, "Eighteenth pass"),
              title=f"A/B of the eighteenth pass's builds ({ab200['device']['name']})").show()
power200 = nbutil.diagnostic("wo_power_h200")
if power200:
    viz.table(vnv.power_rows(power200, nbutil.wo_bounds(wo_recs, power200["device"]["name"])),
              title=f"3 s of back-to-back calls: SM clock, power and sustained ratios ({power200['device']['name']})").show()
timeline_m1 = nbutil.diagnostic("wo_timeline_m1_h200")
if timeline_m1:
    for run in timeline_m1["runs"].values():
        viz.table(vnv.timeline_rows(run, nbutil.wo_bounds(wo_recs, timeline_m1["device"]["name"])),
                  title=f"v5 timeline build of lean 3215 at M = {next(iter(run['builds'].values()))['M']}, SM cycles "
                        f"({timeline_m1['device']['name']})").show()

# %% [markdown]
# ### What the tensor-core clock slows, and what it does not (nineteenth pass)
# The eighteenth pass left a question. The wgmma-only twin took about the stream-only twin's time times the clock ratio
# (20.28 against 18.98 us, at 1.85 against 1.98 GHz). Does the weight stream itself follow the SM clock? If it did, a
# tensor-core kernel's bound would be the bytes over the copy bandwidth *at its clock*.
#
# `scripts/gpu_clock_stream.py` answers it. A companion kernel (`kernels/clock_companion.cu`) holds 4 SMs for the
# whole timed section with one kind of work and measures its own SM clock. Each workload runs on the other SMs: the
# workbench's copy kernel, the wo stream-alone twin at M = 8 and the recorded M = 1 build, both on 128 CTAs. The
# table below is the last run (one device call, medians of 3 interleaved rounds, the M = 1 build validated):
# - **The clock is the whole chip's.** Any tensor-core work, even on only 4 of the 132 SMs, puts the chip at
#   ~1.79-1.80 GHz: wgmma n8 or n64, or mma.sync. One wgmma group every 32 us costs about 1%; a single group at the
#   start costs nothing, so the lower clock lasts only while the tensor cores work.
# - **The memory stream does not follow it.** The copy kernel (4.08 TB/s) and the stream-alone twin keep their
#   times within 0.5% at 1.79 GHz.
#
# So the bound stays the bytes over the copy bandwidth. What the lower clock slows is the consumer: at M = 1 its
# ~1960 busy cycles per unit (the timeline above) take 1.09 us at 1.80 GHz, against 0.99 us at 1.98 GHz. Beside it the
# stream needs 1.15 us per unit. And the 1.3 us that the wgmma-only twin took over the stream alone was not a slower
# stream.
#
# In this run the recorded M = 1 build took ~2.1 us more than the stream alone: by the timelines, ~1 us of period
# over the stream's and ~1.1 us of decode and wgmma on the last unit after its last byte. A full barrier per 64-k
# chunk (the chunk-major stream, LEAN bit 5) would cut the second to a chunk or two. It lost at M = 1 and 8 (the A/B
# under the table: lean 3239 and 3235 with and without the chunk-ahead prefetch, 3303 and 3299 with 4-tile pieces).
# Bit 5 rules out one copy per unit and so the first unit in the prologue (bit 14). Against its parent without
# bit 14 (lean 3215) the best one gained only 0.14 us at M = 8. It was reverted. A second run timed the M = 8
# builds at M = 1 beside the recorded one, with the baselines: the best was 0.14 us faster (2.80x against 2.78x
# cuBLAS bf16), within the spread between runs.

# %%
clock200 = nbutil.diagnostic("clock_stream_h200")
if clock200:
    cc = recorded_ceilings(clock200["device"]["name"])
    viz.table(vnv.clock_stream_rows(clock200, cc.copy_TBps if cc else None),
              title=f"Workloads beside a companion that holds 4 SMs (or every SM) ({clock200['device']['name']})").show()
if ab200:
    viz.table(vnv.ab_rows(ab200, "Nineteenth pass"),
              title=f"A/B runs of the nineteenth pass: the chunk-major builds, then the M = 1 launch "
                    f"({ab200['device']['name']})").show()

# %% [markdown]
# ### Row-owned CTAs: one kernel per call (v9, v9p; twenty-second pass)
# Every kernel above splits K across CTAs, so each call ends with fp32 partials reduced into a workspace and a second
# kernel, `wo_finalize`, that converts them; the H200's traces put that tail and its launch at about what M = 1 and 8
# miss 3x by. v9 removes it: each CTA owns whole output rows over the full K, sums its warps' partials in shared
# memory and writes bf16 itself. Rows split in slices of 8 (wo's 896 slices give 132 CTAs 6 or 7 each; 16-row tiles
# would give some CTAs 4 against a mean of 3.4), so the weight is an mma.sync operand (`kernels/wo_gemm_v9.cu`):
# - **v9** puts the 8 weight rows in the n8 B operand and the tokens in the m16 A operand, half of it empty at
#   M <= 8. Its stream-only twin runs near the copy bound and well under the split-K call, but its decode-only and
#   mma-only twins each cost microseconds over it and the full kernel more than both (the second table: its
#   last run).
# - **v9p** pairs the CTA's slices as the rows g and g + 8 of an m16 A tile (half the HMMAs per weight element), an
#   odd count's last slice as a "lone" tile with zero upper rows, and the tokens as the n8 B operand; the stream is
#   laid out per grid (`prepare_stream_v9p`). Nsight Compute (the third table) shows the consumer issue slots mostly
#   idle and few warps eligible: latency, not instruction count, held it. Sixteen consumer warps in two groups
#   that take the stages in turn, and "early release" (each warp copies its chunk to registers and frees the stage
#   before the math) won M = 1 in that pass. Once x was copied ahead of the weight (the timelines below), the
#   group build without early release was as fast or faster; the record's tuning picks among them per card.
# - **What it costs at M = 8:** every CTA reads all of x (132 x 256 KB from L2 at M = 8 against 4 KB per unit in the
#   split-K kernels): the stream-with-x twin is microseconds slower than the stream alone at M = 8 and not at M = 1.
#   Clusters of two CTAs sharing x's copies by multicast lost at every M (fourth table): the pair waits for both
#   CTAs' consumers before a stage is refilled.
# - **Measured, not assumed:** zeroing x's unused rows before the CTA barrier delayed the first weight copies by about
#   a microsecond at M = 1 (the stream-only twin's time moved with it); the consumers now zero them while the first
#   copies are in flight. A deeper ring at M = 1 (one staged x row, so 5-6 stages fit) was slower than 4 stages
#   (the last table; reverted).
#
# The first table is the A/B run that chose the build (`data/diagnostics/wo_v9_h200.json`, commit 55136d6, every
# build validated, the then-recorded v5 path and cuBLAS in the same run); the lines under it compare the two per M.
# The record's fused-steps table above lists `w4a16_v9p` beside v5 at M = 1 and 8.

# %%
v9d = nbutil.diagnostic("wo_v9_h200")
if v9d:
    viz.table(vnv.v9_rows(v9d, run="55136d6", only=("w16_ch8_st4_er", "w12_ch12_st3_er", "diag_stream")),
              title=f"v9p A/B ({v9d['device']}, commit 55136d6)").show()
    for case, c in vnv.v9_run(v9d, "55136d6")["cases"].items():
        r = c["rows"]
        best = min((n for n in r if n.startswith("v9p") and "diag" not in n and not n.endswith("_pdl")),
                   key=lambda n: r[n]["median_us"])
        print(f"{case} (bound {c['bound_us']:.2f} us): {best} {r[best]['median_us']:.2f} us "
              f"({r[best]['vs_cublas_bf16']:.2f}x cuBLAS bf16), "
              f"PDL {r[best + '_pdl']['median_us']:.2f} us ({r[best + '_pdl']['vs_cublas_bf16']:.2f}x); recorded path "
              f"{r['recorded']['median_us']:.2f} us ({r['recorded']['vs_cublas_bf16']:.2f}x), PDL "
              f"{r['recorded_pdl']['median_us']:.2f} us; stream-only twin {r['v9p_s7_nt1_w8_ch8_st4_diag_stream']['median_us']:.2f} us")
    viz.table(vnv.v9_rows(v9d, run="e56f390"), title=f"v9 (weight as the B operand) with its decode-only and mma-only "
                                                     f"twins ({v9d['device']}, commit e56f390)").show()
    viz.table(vnv.v9_ncu_rows(v9d, nbutil.wo_bounds(wo_recs, v9d["device"])),
              title=f"Nsight Compute on v9p, one launch each ({v9d['device']}, commit {v9d['ncu']['commit']})").show()
    viz.table(vnv.v9_rows(v9d, run="ed6020c", only=("w16_ch8_st4", "diag_stream_x")),
              title=f"v9p on clusters of two CTAs (multicast x) beside the same builds alone ({v9d['device']}, commit "
                    "ed6020c)").show()
    viz.table(vnv.v9_rows(v9d, run="ef27a2a", only=("_x1", "w16_ch8_st4_er")),
              title=f"v9p at M = 1 with one staged x row and 5-6 stages, beside the 4-stage build, which the "
                    f"recorded path ran then ({v9d['device']}, commit ef27a2a; reverted)").show()

# %% [markdown]
# ### Where a row-owned CTA's time goes (timelines)
# Timeline builds of v9p (`V9P_TIMELINES`, the build's own math plus clock stamps per CTA and ring stage) show when
# the producer issued each stage, when it was full, and when its consumers were done
# (`scripts/gpu_wo_v9_timeline.py`, `data/diagnostics/wo_v9_timeline_h200.json`).
# - **x behind the weight.** The producer used to issue the first stages' weight copies, then x's (the order PDL
#   needs: the weight is constant, x belongs to the previous kernel until it completes). An SM's copies are served
#   about in issue order, so stage 0 waited for x behind four stages of weight: it was full twice as late as in the
#   stream-only twin. With ordinary launches the producer now copies each stage's x first (the first table and the
#   figure: `_xfirst` against `_xlast`); with PDL the old order stays.
# - **The tail.** After the last stage lands, a consumer warp still decodes and multiplies its chunk, then the
#   warps' partials meet in shared memory and the CTA stores its rows: the `tail` column, against the stream-only
#   twin's release. Two ways to shorten it tied or lost: splitting the last stage's chunks into two half stages of
#   64-k atoms (an extra stage boundary cost what it saved), and sharing the last stage between the two warp groups
#   (a tie); both reverted.
# - **The slowest CTA.** Stamped back to back, the twins' CTAs end far apart (a few SMs get their bytes later); the
#   full build's CTAs all end together, each held by its consumer (the second table). So the kernel ends with the
#   slowest CTA either way, and the full build's time is close to the mma-only twin's.
#
# Cycles are SM cycles from each CTA's start (medians over CTAs of one launch); `timed us` is the same build without
# stamps, timed as the record times it, in the same run.

# %%
tld = nbutil.diagnostic("wo_v9_timeline_h200")
if tld:
    bound_m1 = nbutil.wo_bounds(wo_recs, tld["device"]).get(1)
    viz.table(vnv.v9_timeline_rows(tld, "9b3a115", bound_m1),
              title=f"v9p timelines at M = 1, x first against x last ({tld['device']}, commit 9b3a115)").show()
    vnv.fig_v9_stage_arrivals(tld, "9b3a115", builds=("w8_ch8",)).show()
    viz.table(vnv.v9_timeline_rows(tld, "e077cf4", bound_m1),
              title=f"the 8-warp build and its twins, stamped back to back ({tld['device']}, commit e077cf4)").show()

# %% [markdown]
# ## Accuracy
# Output error of the wo GEMM against an fp32 reference (the "true" weight in fp32, activations as
# given in bf16): bf16 weight, fp8 per-tensor (weight and activations), fp8 with 128x128 weight blocks
# and 1x128 activation groups (DeepSeek's recipe), NVFP4 weight-only (what Hopper runs here) and NVFP4
# W4A4 (weights and activations, as Blackwell runs it). The x axis scales 16 fixed input channels
# (systematic outlier features); 1 means Gaussian activations. On CPU the study runs now at a small
# size; the GPU record holds the full wo shape.

# %%
study = wo.accuracy_study(M=M_STUDY, N=N_STUDY, K=K_STUDY,
                          outlier_scales=(1.0, 10.0, 100.0) if SMOKE else (1.0, 10.0, 30.0, 100.0, 300.0))
vnv.fig_accuracy(study, "rel_l2").show()
vnv.fig_accuracy(study, "cosine").show()
if rec_wo and "accuracy_study" in rec_wo:
    a = rec_wo["accuracy_study"]
    print(f"recorded on the GPU at M={a['M']}, N={a['N']}, K={a['K']}:")
    vnv.fig_accuracy(a["rows"], "rel_l2").show()

# %% [markdown]
# ## Try it
# Quantize your own row and see the codes (widgets only when INTERACTIVE).

# %%
if INTERACTIVE:
    import ipywidgets as w

    def show(scale=1.0, outlier=1.0):
        xr = nv.make_inputs(1, 64, seed=3, device="cpu").float() * scale
        xr[0, 5] *= outlier
        q = nv.quantize_reference(xr, "tensor")
        d = nv.dequantize_reference(q)
        print("scales:", nv.e4m3_decode(q.scales[0]).tolist())
        print(f"rel-L2 {float((d - xr).norm() / xr.norm()):.4f}")

    w.interact(show, scale=(0.01, 100.0), outlier=(1.0, 1000.0))

# %% [markdown]
# ## Where the targets stand
# The targets for the dispatcher `wo_nvfp4`, each ratio from one record's own run (the record above and the
# committed records of other cards, `data/diagnostics/wo_gemm_record_*.json`): 3x cuBLAS bf16 at M = 1, 8, 32 and
# 64; 1.5x torch fp8 at M <= 32; never slower than 1.15x cuBLAS bf16's time at any M (a ratio of at least 0.87);
# and the output within rel-L2 1e-3 of the fp32 GEMM of the dequantized operands at every M. The second table is the
# quantizer's target: its default kernel at 85% of copy bandwidth or more, exact, at both shapes. `met` is the ordinary
# launch; `met with PDL` the same dispatcher launched with programmatic dependent launch. cuBLAS bf16 itself moves
# by several percent between runs of one card (notes), about as much as the closest ratios miss or clear 3x by.
# Only the targets' shapes are judged: a live smoke run (smaller N, K and M) is listed as not judged.

# %%
def not_judged(recs, kind, shapes):
    for r in vnv.judged_records(recs, kind)[1]:  # e.g. a live smoke run: its sizes say nothing about the targets
        label = "this live run" if r.get("live") else f"commit {str(r['git_commit'])[:7]}"
        print(f"{r['device']['name']} ({label}): not judged, its cases are not the targets' shapes ({shapes})")


target_rows = vnv.wo_target_rows(wo_recs) if wo_recs else []
not_judged(wo_recs or [], "wo", f"N, K = {vnv.WO_TARGET_SHAPE}")
if target_rows:
    viz.table(target_rows, title="wo GEMM: the targets per card (each row's ratios from its own run)").show()
    for card in dict.fromkeys(r["card"] for r in target_rows):
        mine = [r for r in target_rows if r["card"] == card]
        missed = [f"{r['target']} at M = {r['M']} ({r['measured']:.2f}x"
                  + (f", {r['with PDL']:.2f}x with PDL" if r["with PDL"] else "") + ")" for r in mine if not r["met"]]
        print(f"{card} ({mine[0]['commit']}): {len(mine) - len(missed)} of {len(mine)} met with ordinary launches"
              + (f"; not met: {'; '.join(missed)}" if missed else ""))
q_recs = nbutil.card_records("nvfp4", rec_q)
q_rows = vnv.quantize_target_rows(q_recs)  # the quantizer's target, per card
not_judged(q_recs, "quantize", ", ".join(vnv.QUANT_TARGET_CASES))
if q_rows:
    viz.table(q_rows, title=f"NVFP4 quantize: each layout's default kernel against {vnv.QUANT_TARGET_PCT}% of copy "
                            "bandwidth, per card").show()
    q_missed = [f"{r['card']} {r['case']} {r['layout']} ({r['measured']}%)" for r in q_rows if not r["met"]]
    print(f"quantize target: {len(q_rows) - len(q_missed)} of {len(q_rows)} met"
          + (f"; not met: {'; '.join(q_missed)}" if q_missed else ""))

# %% [markdown]
# ## What we learned
# - The reference defines NVFP4 exactly (tie table, saturation, scale rounding, the zero and denormal
#   policies) and the kernels match it bit for bit; the one trap was torch's CUDA division by a Python
#   scalar, which multiplies by a reciprocal and is not the IEEE quotient.
# - Software decode on Hopper is not free: the integer pipe issues half as many lanes per clock as the
#   fp32 pipe, and both the quantizer (v1/v2) and the first fused GEMMs spent more integer ops per element
#   than the memory time allows. Counting integer ops per element against bytes per element is the first
#   napkin check; moving rounding to the fp32 pipe (quantize v3) and choosing the stored bit layout for the
#   decode (wo v4) is what moved the times on the H200; on the H100 (less bandwidth per integer op) the
#   quantizer v1 is already close to the bound and v3 does not beat it (compare the rows above).
# - Profile before choosing the fix. On the H200 the quantizer v5 looked memory-bound but Nsight Compute showed it
#   issue-bound (most issue slots busy, 17 instructions per element); bulk-copy feeds that serve the GEMMs well made
#   it slower, and taking instructions out (v11: one FMA for the rounding step, the clamp on bf16 pairs, no per-block
#   overhead on full tiles) brought it from 81% to 87% of copy bandwidth at [8192, 7168] (the record above).
# - Count the whole call, and count every byte each CTA reads. Row-owned CTAs (v9p) drop the split-K finalize, and
#   their stream-only twin runs near the copy bound, which won M = 1; but each CTA then reads all of x, which at
#   M = 8 costs more L2 traffic than the finalize saved, so the split-K kernel stays there.
# - Stamp the timeline before guessing. The v9p consumer looked like the cost, but the timelines showed the first
#   stage waiting for x queued behind four stages of weight: reordering two copies was worth more than the
#   consumer changes tried around it (two ways to shorten the tail, a split accumulator: ties or losses).
# - Write whole 32-byte sectors. The linear scale bytes needed 32 blocks per CTA (a sector per row, not a quarter of
#   one), and dequantize v2 gives each lane 16 contiguous output bytes so a warp store covers 512 bytes: both moved
#   the H200 more than any change to their arithmetic.
# - A static weight can be laid out for the kernel once: v4's prepared stream (coalesced 16-byte lane
#   chunks, scales inside the stream, one scale block per lane and row) plus a stream-K split beat every
#   v1-v3 tiling at M <= 8. It does not reach the copy bound yet: the table's "% of bound" says how far.
#   Handing out work dynamically did not close the gap: with only a handful of units per CTA every grab
#   ends in a stream-K flush (a fence and an atomic round trip), so the static split stayed best.
# - Streaming was not the limit: a ring that only streams runs near the copy bound. What held the
#   fused kernels back at M <= 8 was the end of the kernel: under a saturated memory system SMs finish
#   an equal static share at different times, and a split-K fixup inside the kernel (fence, counter,
#   re-read) makes every dynamic grab expensive. Moving the fixup to a PDL-launched finalize kernel and
#   handing out the last part of the work dynamically is what brought M = 1 and 8 past 3x cuBLAS bf16 on the H100
#   (its record in the two-card table); on the H200 the static split measured faster again.
# - At M >= 32 the mma.sync kernel with tokens as the n8 operand pays for every extra token tile (x
#   fragments re-read per weight tile) and loses to cuBLAS. The wgmma kernel v5 reads x once per CTA and
#   unit and beats both v4 and cuBLAS bf16 there; it does not reach 3x cuBLAS bf16 yet (the table above).
# - Look at the whole call, not the GEMM kernel: a CUPTI trace of the replayed graph
#   (scripts/gpu_wo_trace.py) showed the old finalize ending long after the GEMM at M = 32 and 64, from
#   scattered 2-byte stores over M output rows. Transposing through shared memory, halving the atomics and
#   keeping the finalize resident beside the GEMM moved M = 32 and 64 more than any GEMM config had (the
#   measurements are in docs/notes_wo_gemm.md, sixth pass).
# - Read the compiler's warnings: ptxas serialized every wgmma of v5 (warning C7518) because the consumer
#   branch depended on `threadIdx.x / 32`, which it cannot prove warp-uniform; a `__shfl_sync` from lane 0
#   fixed it; it mattered most for the 2-warpgroup builds (the 4-warpgroup ones had hidden it behind each
#   other; docs/notes_wo_gemm.md has the times).
# - Fewer instructions did not mean proportionally less time. The lean v5 builds issue about a quarter
#   fewer instructions per unit (SASS counts in docs/notes_wo_gemm.md) and gained a few percent: diagnostic
#   builds showed that neither ring depth nor the x loads limit M = 32; the consumers keep up with the
#   stream on average but not with its bursts, so the ring fills, fewer copies are in flight and they
#   then wait for data (about a quarter of their time in the source-level profile).
# - Measure the floor of each part separately, and test a hypothesis before building on it. v5 without
#   its decode (each code word fed straight to the tensor cores) was as slow as v5 with it, so the wgmma
#   side holds M = 32 and 64 above the bound. We took that for a fixed cost per register-A instruction and
#   built v7 and v8 (the weight as the B operand, fewer and wider instructions): correct, but slower (the
#   decoded weight's round trip through shared memory; in v8 too few decoder warps for the registers left
#   beside 64 accumulators). A microbenchmark then showed the instruction alone at the tensor peak:
#   what v5 loses is in how it runs its wgmma (waits per group, the stage hand-off), which is where to look
#   next (docs/notes_wo_gemm.md, eighth pass).
# - Then look inside one CTA. Clock stamps per unit and per group (the timeline table above) showed the
#   stage hand-off and the wgmma waits to be small: each group's decode and issue fills its time, the stream
#   runs close to copy bandwidth between the ramp and the tail, and the consumer, barely the slower side,
#   cannot make up the ramp in which no SM has its first stage yet. The four changes that timeline suggested
#   (one copy per unit, a later prefetch, a full barrier per 64-k chunk, more groups in flight) were each
#   measured and each lost; the copy engine prefers many 2.3 KB copies in flight to few large ones. The stamps
#   perturb the kernel differently per build, so builds are ranked by their stamp-free twins only. And read
#   ptxas's C7512 too: a build it serializes measures the serialization, not the design (notes, ninth pass).
# - Then remove whole costs rather than instructions, and check what the hardware schedules. Three fewer
#   integer instructions per code word (the rotate layout) gained a few percent at M = 64 and nothing at
#   M = 32. Summing the split-k partials in distributed shared memory removes the workspace, the red.add
#   flush and `wo_finalize` (about 2-3 us of the M = 32 call), but 4-CTA clusters over 32 row groups of 224
#   rows need 32 clusters at once and a Hopper runs 30 (`cuOccupancyMaxActiveClusters`); with 256-row groups
#   (28 clusters, 112 SMs) each SM streams and decodes 16 units instead of 13-14, which costs more than the
#   finalize saved (`params.v5_tuning_us`, `_cl` rows; notes, tenth pass).
# - Then check the tools too. The clock stamps of the timeline builds had made ptxas serialize their wgmma
#   (C7513), so the first timelines overstated each unit's cost; unserialized, the groups ran at the
#   microbenchmark's rate beside the stream, and the time left sat at each unit's start: the row-group test
#   `u / n_kc` compiled to ~45 instructions with a reciprocal chain. A multiply-high instead (LEAN bit 10)
#   gained 4% at M = 64, where the consumer limits, and nothing at M = 32, where it already waits for the
#   stream. A barrier per warpgroup, even shares on 128 CTAs and releasing each stage at its unit's end were
#   measured and lost (notes, eleventh pass; `data/diagnostics/wo_ab_h100.json`).
# - Code at a unit's boundary costs more than its instruction count. Shares of 64-k chunks (so no CTA streams a
#   whole unit more than another) lost, even on 128 CTAs where every share is whole units again: the producer,
#   issuing the same copies, refilled released stages later. Computing each consumer's units instead of reading
#   them from shared memory did not gain; its first version was serialized by ptxas under a code (C7514) the
#   compile test did not yet look for. A producer with fewer instructions per unit lost too: a stamp at each
#   stage claim showed it waiting on the copy engine the whole time at M = 32, so its code is not the limit
#   (notes, twelfth pass, with the times; `data/diagnostics/wo_ab_h100.json`, `wo_ab_h200.json`,
#   `wo_timeline_producer_h100.json`).
# - A benchmark can reward a cache hint for warming its own next call. An `evict_first` policy on the weight copies
#   made M = 32 about 1.1-1.4 us faster when calls ran back to back, and nothing when L2 was scrubbed between calls:
#   a hinted call no longer evicts the code, workspace and counters its successor needs, while no part of the weight
#   itself survives to the next call (`scripts/gpu_l2_survival.py`). In a model other kernels run between two calls
#   of one GEMM, so the policy was reverted; the table above shows the record's ratios hold under a scrubbed L2
#   within ~0.1. An L2 prefetch of the weight ahead of the ring lost too: the read bandwidth is the copy bandwidth
#   (notes, thirteenth pass).
# - The layout of a write can cost as much as its bytes. Each CTA ends with a flush of its fp32 partials
#   (32 KB at M = 32 and 64); into the row-major workspace one warp's `red.add` touches 16 rows, and the
#   drain plus flush took ~1.95k cycles at the end of every CTA. Storing each tile's partials in the order the
#   lanes already hold them (LEAN bit 2048) makes each warp's adds four whole lines: ~0.57k cycles, 0.5-0.8 us
#   per call at M = 32 and 64, with a scrubbed L2 too (notes, thirteenth pass;
#   `data/diagnostics/wo_timeline_fragws_h100.json`).
# - Remove a part before you optimize it, and check that the compiler removed only that. Twins of the recorded builds
#   whose flush stores its partials plainly or not at all (the table of the flush above) showed the flush costing
#   ~0.5 us at M = 32, all of it the red.add atomics, and nothing at M = 64, where the consumer costs 4.6 us over the
#   stream alone. A first "no writes" twin kept one value, and ptxas dropped the wgmma whose results were now unused:
#   count the HGMMA in the SASS of every diagnostic build. Five changes at the kernel's tail then lost: all of a
#   unit's shared-memory words loaded at once (the consumer 2% faster, the stream slower), the workspace prefetched
#   into L2, the last unit sent as two halves, the last flush as copy-engine bulk reductions, and per-CTA workspace
#   slots with plain stores summed by the finalize (no atomics, and far slower); a finalize with twice the CTAs tied
#   (notes, fourteenth pass; `data/diagnostics/wo_ab_h100.json`).
# - Tune on the card you report. The H200's run chose other builds than the H100's at every M: one bulk copy per
#   unit (LEAN bit 3), which lost on the H100, is in all of them, and combined with the H100's choices (the
#   fragment-major workspace, the rotate layout, the multiply-high, the prefetch) it made the fastest build at every
#   M <= 64 on the H200 (lean 3215; the `v5_tuning_us` tables of the record hold every candidate's time). Only the
#   combination won at M = 64: one copy per unit alone and the prefetch alone tied or lost. So `wo_nvfp4` takes its
#   configs from a table per GPU model, written from each card's record, not from one card's tuning. What a faster
#   memory does not buy is shown by the two-card table: the fixed costs (ramp, decode and wgmma beside the stream,
#   the finalize's tail) stay, so the ratios to cuBLAS bf16 fall on the H200 (notes, fifteenth pass).
# - A kernel's code is memory too. In every call the previous call's weight stream has evicted the kernel's code from
#   L2, and the producer warp's path sits after the consumers' in the binary, so its first copy went out long after
#   the producer started (the lines under the H200 timeline table). Issuing the first unit from the straight-line
#   prologue, before the CTA barrier, won at every M; issuing every stage there lost by more, because then stage 0
#   no longer lands ahead of the rest (the sixteenth pass's A/B table; notes, sixteenth pass).
# - Count what holds the call before cutting instructions. At M = 1 the block-diagonal build ran about a fifth fewer
#   consumer instructions per unit (by the source) and still lost 0.3 us to the recorded build, after its own x path
#   (the kernel storing each unit's x) had first cost 1.3 us: the fewer instructions did not show in the call's time
#   (the seventeenth pass's A/B table; notes).
# - Measure the clock you run at. On the H200 every kernel that keeps the tensor cores busy ran ~8% below the
#   clock nvidia-smi reported, with no clock-event reason, and the fused kernel met the power cap from M = 8 up when
#   run for seconds; only a probe of SM cycles against the global timer beside the kernel showed the first. Bursts and
#   sustained load give different ratios (the eighteenth pass's table; notes). Then check what the clock drives
#   before blaming it. One matching ratio suggested that the weight stream follows the clock. A companion kernel that
#   lowered the chip's clock by 9% left the stream's time unchanged (the nineteenth pass's table).
# - Diagnostics are code that can be wrong: the timeline builds of the fragment-major workspace first gave wrong
#   outputs (their launcher read the workspace in the linear order). Validating every timeline build's output, as
#   every timed build's, caught it; a GPU test now does it for each.
# - Three bugs that only showed on the full wo shape, each caught by validating every timed variant: a
#   register A operand indexed at run time lives in local memory, so the registers an in-flight wgmma reads
#   were reused (NaN); one warp's `wgmma.wait_group` covers only its own rows, so a shared B buffer needs a
#   warpgroup barrier before it is overwritten; and a PDL launch that reads the weight before
#   `griddepcontrol.wait` races the kernels that built that weight's stream just before (such a call now
#   launches without PDL).
# - PDL helps a memory-bound kernel most at its start: the first weight copies can go out before the
#   previous kernel ends. Deferring the x loads of every ring stage behind their weight copies cost
#   about 3 us at M = 32; deferring only the first unit's is what the kernels do.
# - Quantizing into the swizzled layout costs nothing extra once a CTA owns whole 128x4 tiles of scales:
#   the scattered scale-byte stores, not the encoder, held v3's swizzled path back (compare the
#   `swizzled_v3` and `swizzled` rows of the quantize table above).
# - Dequantize-then-cuBLAS on every call never wins: it writes and re-reads the bf16 weight.
# - Accuracy: NVFP4 weight-only costs the relative L2 error of the 4-bit grid on the wo output (the study
#   above prints it; the format's arithmetic predicts about 9.5%), flat in the outlier magnitude because activations stay bf16. W4A4 adds activation error on top; with outlier
#   channels its relative error falls back toward the weight-only error, because the outlier channels
#   dominate the output and each 16-element block has its own scale. fp8 sits between bf16 and NVFP4;
#   128x128 blocks help fp8 only once activations have outliers.
