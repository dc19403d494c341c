"""Triton kernel of the separate-Q/K/V MLA context attention (causal flash-attention forward).

Why Triton: the attention's two GEMMs per KV tile need Hopper's wgmma (warpgroup MMA, operands in shared
memory, asynchronous) to get past ~half of the bf16 peak; mma.sync tops out well below it. Triton ships
with torch, lowers `tl.dot` to wgmma on sm_90 and software-pipelines the KV loads (cp.async into a
`num_stages`-deep shared-memory ring), so the kernel stays a page of readable code. The tiling, the
pipeline depth and the warp count are autotuned per sequence-length bucket.

Inputs read in place (no assembled k, no contiguous v):
  q      [T, H, Dn+Dr]  per head [q_nope | q_pe]; split inside the kernel into two dots
  k_nope [T, H, Dn]     any token/head strides (the view into kv_b_proj's output: H*256, 256)
  k_pe   [T, Dr]        one rope key per token for all heads: head stride 0, read per KV tile
                         (a [T, H, Dr] per-head k_pe works too: pass its head stride)
  v      [T, H, Dv]     any token/head strides (the other view into kv_b_proj's output)
  out    [T, H, Dv]     bf16
One program computes BLOCK_M query rows of one head of one sequence (cu_seqlens), walking the KV tiles
left of the diagonal without masks, then the diagonal tile(s) with the causal mask. Scores are
S = q_nope @ k_nope^T + q_pe @ k_pe^T (fp32 accumulators); the online softmax runs in fp32 in base 2
with softmax_scale * log2(e) folded into one multiply; P is rounded to bf16 for the P @ V wgmma.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def mla_fwd_kernel(
    Q, KN, KPE, V, O, CU_SEQLENS,
    stride_qt, stride_qh, stride_knt, stride_knh, stride_kpt, stride_kph, stride_vt, stride_vh,
    stride_ot, stride_oh,
    qk_scale,  # softmax_scale * log2(e)
    SEQ_BUCKET,  # autotune key only (next power of two of the longest sequence)
    D_NOPE: tl.constexpr, D_ROPE: tl.constexpr, D_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    tl.static_assert(BLOCK_M % BLOCK_N == 0, "the causal stage split needs BLOCK_M to be a multiple of BLOCK_N")
    # Heaviest query blocks (last rows of the causal triangle) first, so the tail of the grid is short.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.program_id(2)
    seq_start = tl.load(CU_SEQLENS + seq)
    seqlen = tl.load(CU_SEQLENS + seq + 1) - seq_start
    start_m = pid_m * BLOCK_M
    if start_m >= seqlen:
        return
    # 64-bit scalar base pointers (T * H * 256 overflows int32 past T = 64k); everything inside a tile
    # is a small int32 offset. Only the scalar bases are carried through the loops: carrying 2-D pointer
    # tensors would keep one 64-bit pointer per element live in registers and spill.
    row0 = (seq_start + start_m).to(tl.int64)
    tok0 = seq_start.to(tl.int64)

    offs_m = tl.arange(0, BLOCK_M)  # query rows relative to start_m
    offs_n = tl.arange(0, BLOCK_N)  # key rows relative to the current KV tile
    offs_dn = tl.arange(0, D_NOPE)
    offs_dr = tl.arange(0, D_ROPE)
    offs_dv = tl.arange(0, D_V)
    row_ok = start_m + offs_m < seqlen

    q_rows = Q + row0 * stride_qt + head * stride_qh + offs_m[:, None] * stride_qt
    q_nope = tl.load(q_rows + offs_dn[None, :], mask=row_ok[:, None], other=0.0)
    q_pe = tl.load(q_rows + D_NOPE + offs_dr[None, :], mask=row_ok[:, None], other=0.0)

    kn_tile = offs_n[:, None] * stride_knt + offs_dn[None, :]
    kp_tile = offs_n[:, None] * stride_kpt + offs_dr[None, :]
    v_tile = offs_n[:, None] * stride_vt + offs_dv[None, :]
    kn_base = KN + tok0 * stride_knt + head * stride_knh
    kp_base = KPE + tok0 * stride_kpt + head * stride_kph
    v_base = V + tok0 * stride_vt + head * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (base-2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running row sum of exp2
    acc = tl.zeros([BLOCK_M, D_V], dtype=tl.float32)

    # Stage 1: KV tiles entirely left of this query block: every key is visible, no masks at all.
    for _ in tl.range(0, start_m, BLOCK_N):
        kn = tl.load(kn_base + kn_tile)
        kp = tl.load(kp_base + kp_tile)
        s = tl.dot(q_nope, tl.trans(kn))
        s = tl.dot(q_pe, tl.trans(kp), s)
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + v_tile)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
        kn_base += BLOCK_N * stride_knt
        kp_base += BLOCK_N * stride_kpt
        v_base += BLOCK_N * stride_vt

    # Stage 2: the diagonal tiles: causal mask (key <= query) and the sequence end on the loads.
    hi = tl.minimum(start_m + BLOCK_M, seqlen)
    for start_n in tl.range(start_m, hi, BLOCK_N):
        col_ok = start_n + offs_n < seqlen
        kn = tl.load(kn_base + kn_tile, mask=col_ok[:, None], other=0.0)
        kp = tl.load(kp_base + kp_tile, mask=col_ok[:, None], other=0.0)
        s = tl.dot(q_nope, tl.trans(kn))
        s = tl.dot(q_pe, tl.trans(kp), s)
        visible = (start_m + offs_m)[:, None] >= (start_n + offs_n)[None, :]
        s = tl.where(visible, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: the key at column start_m <= every row is visible
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + v_tile, mask=col_ok[:, None], other=0.0)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
        kn_base += BLOCK_N * stride_knt
        kp_base += BLOCK_N * stride_kpt
        v_base += BLOCK_N * stride_vt

    out = acc / l_i[:, None]
    o_ptrs = O + row0 * stride_ot + head * stride_oh + offs_m[:, None] * stride_ot + offs_dv[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


# Tiles x pipeline depth x warps. BLOCK_M is a multiple of BLOCK_N (the stage split relies on it).
# 8 warps = 2 warpgroups, each owning 64 query rows of the wgmma accumulators.
# Measured on an H200 at T = 8192 (TFLOP/s): 128x64 s3 423, 128x64 s2 415, 128x32 s4 325, 128x32 s3 463,
# 64x64 w4 s3 251. BLOCK_N = 32 needs 128 registers and ~110 KB of shared memory, so two programs share
# an SM and one's softmax overlaps the other's wgmma; 128x64 needs ~188 registers (one program per SM).
# BLOCK_N = 128 with 2 stages needs ~245 KB of shared memory (q 48 KB + 2 x (K 48 KB + V 32 KB)) and
# does not fit Hopper's 227 KB.
CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=2),
]

mla_fwd_autotuned = triton.autotune(configs=CONFIGS, key=["SEQ_BUCKET"])(mla_fwd_kernel)


def launch(q, k_nope, k_pe, v, out, cu_seqlens, num_seqs: int, max_seqlen: int, scale: float,
           config: dict | None = None):
    """Launch on torch's current stream. `config` = {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
    skips the autotuner (tests, the interpreter, sweeps)."""
    t, h, dq = q.shape
    dn, dv = k_nope.shape[-1], v.shape[-1]
    dr = dq - dn
    kph = k_pe.stride(1) if k_pe.dim() == 3 else 0
    bucket = 1 << max(0, math.ceil(math.log2(max(1, max_seqlen))))
    args = (q, k_nope, k_pe, v, out, cu_seqlens,
            q.stride(0), q.stride(1), k_nope.stride(0), k_nope.stride(1), k_pe.stride(0), kph,
            v.stride(0), v.stride(1), out.stride(0), out.stride(1), scale * LOG2E, bucket)
    if config is not None:
        cfg = dict(config)
        bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
        grid = (triton.cdiv(max_seqlen, bm), h, num_seqs)
        compiled = mla_fwd_kernel[grid](*args, D_NOPE=dn, D_ROPE=dr, D_V=dv, BLOCK_M=bm, BLOCK_N=bn, **cfg)
    else:
        def grid(meta):
            return (triton.cdiv(max_seqlen, meta["BLOCK_M"]), h, num_seqs)

        compiled = mla_fwd_autotuned[grid](*args, D_NOPE=dn, D_ROPE=dr, D_V=dv)
    global last_compiled
    last_compiled = compiled  # registers / spills of the last launch, for reports
    return out


last_compiled = None


def best_config(max_seqlen: int) -> dict | None:
    """The config the autotuner picked for this sequence-length bucket (None before the first run)."""
    bucket = 1 << max(0, math.ceil(math.log2(max(1, max_seqlen))))
    try:
        for key, cfg in mla_fwd_autotuned.cache.items():
            if key and key[0] == bucket:
                return {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    except Exception:  # the autotuner's cache layout is not a stable API
        return None
    return None
