"""Triton kernel of the separate-Q/K/V MLA context attention (causal flash-attention forward).

Why Triton: the attention's two GEMMs per KV tile need Hopper's wgmma (warpgroup MMA, operands in shared
memory, asynchronous) to get past ~half of the bf16 peak; mma.sync tops out well below it. Triton ships
with torch, lowers `tl.dot` to wgmma on sm_90 and software-pipelines the KV loads (cp.async or TMA into
a `num_stages`-deep shared-memory ring), so the kernel stays a page of readable code.

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
with softmax_scale * log2(e) folded into one multiply-add; P is rounded to bf16 for the P @ V wgmma.

Switches (constexpr, part of a config; `CANDIDATES` lists the configs the GPU sweep compares):
  TMA          K/V tiles through tensor descriptors (TMA bulk copies, mbarrier-tracked) instead of
               per-thread cp.async: no address tensors in registers, no load instructions per element.
               The descriptors describe each strided view as a 2-D [T, (H-1)*head_stride + D] window
               whose row stride is the token stride, so head h's tile sits at column h*head_stride.
  LAZY_RESCALE rescale the output accumulator only when some row's running max grew by more than
               RESCALE_LOG2 (base-2 units) since the last rescale; otherwise keep the stale max. Exact:
               numerator and denominator use the same max, and p <= 2^RESCALE_LOG2 stays far from fp32
               or bf16 overflow. Saves the [BLOCK_M, Dv] multiply per tile on almost every tile.
  PREFETCH_QK  (TMA only) software-pipeline the unmasked loop by hand: the scores of tile j+1 are issued
               as an asynchronous wgmma before the softmax of tile j, so the tensor cores run the
               K = 128 nope dot while the CUDA cores do exp2/max/sum/rescale (FlashAttention-3's
               intra-warpgroup overlap). Costs one more [BLOCK_M, BLOCK_N] fp32 tile of registers.
               Not combined with LAZY_RESCALE: its data-dependent branch makes the compiler wait on
               every wgmma again (checked in the TTGIR).
  UNROLL       loop_unroll_factor of the unmasked loop.
  HEAD_MAJOR   grid order (heads fastest, query tiles from the last) instead of query tiles fastest.
The online softmax's scale is already folded where it costs nothing: scores stay raw, and
max * (scale * log2 e) and s * (scale * log2 e) - max are one multiply per row and one FFMA per element;
folding the scale into q instead would add a bf16 rounding of q for no saved instruction.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
RESCALE_LOG2 = 8.0  # lazy rescale threshold: p = 2^(s - stale max) stays <= 256


@triton.jit
def _scores(q_nope, q_pe, kn, kp):
    """S = q_pe @ kp^T + q_nope @ kn^T in fp32 [BLOCK_M, BLOCK_N]. The nope dot chains onto the rope
    dot's accumulator (the compiler folds an explicit sum of two dots back into such a chain, with a
    wgmma wait between the two); rope first, so the wait is on the short K = 64 dot and the long K = 128
    dot is the one left in flight."""
    s = tl.dot(q_pe, tl.trans(kp))
    return tl.dot(q_nope, tl.trans(kn), s)


@triton.jit
def _softmax_pv(s, v, m_i, l_i, acc, qk_scale, start_m, start_n,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, LAZY_RESCALE: tl.constexpr,
                RESCALE_LOG2: tl.constexpr):
    """One KV tile of the online softmax on raw scores `s`: running max/sum, P @ V into acc (fp32 but P)."""
    if MASKED:
        visible = (start_m + tl.arange(0, BLOCK_M))[:, None] >= (start_n + tl.arange(0, BLOCK_N))[None, :]
        s = tl.where(visible, s, float("-inf"))
    # finite: every row sees at least key start_m (stage 1 tiles are fully visible)
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    if LAZY_RESCALE:
        if tl.max(m_new - m_i, 0) > RESCALE_LOG2:  # first tile: m_i = -inf, always taken
            alpha = tl.math.exp2(m_i - m_new)
            acc = acc * alpha[:, None]
            l_i = l_i * alpha
            m_i = m_new
        p = tl.math.exp2(s * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
    else:
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        m_i = m_new
    acc = tl.dot(p.to(v.dtype), v, acc)
    return m_i, l_i, acc


@triton.jit
def mla_fwd_kernel(
    Q, KN, KPE, V, O, CU_SEQLENS,
    stride_qt, stride_qh, stride_knt, stride_knh, stride_kpt, stride_kph, stride_vt, stride_vh,
    stride_ot, stride_oh,
    qk_scale,  # softmax_scale * log2(e)
    D_NOPE: tl.constexpr, D_ROPE: tl.constexpr, D_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    TMA: tl.constexpr, LAZY_RESCALE: tl.constexpr, HEAD_MAJOR: tl.constexpr, PREFETCH_QK: tl.constexpr,
    UNROLL: tl.constexpr,
    RESCALE_LOG2: tl.constexpr,
):
    tl.static_assert(BLOCK_M % BLOCK_N == 0, "the causal stage split needs BLOCK_M to be a multiple of BLOCK_N")
    # Heaviest query blocks (last rows of the causal triangle) first, so the tail of the grid is short.
    if HEAD_MAJOR:
        head = tl.program_id(0)
        pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    else:
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

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (base-2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running row sum of exp2
    acc = tl.zeros([BLOCK_M, D_V], dtype=tl.float32)
    hi = tl.minimum(start_m + BLOCK_M, seqlen)

    if TMA:
        # Descriptor coordinates: [token row, column of this head's slice]. Rows past T read as zeros;
        # rows of the next sequence (varlen) are finite and masked out by the causal test.
        col_kn = head * stride_knh
        col_kp = head * stride_kph
        col_v = head * stride_vh
        # Stage 1: KV tiles entirely left of this query block: every key is visible, no masks at all.
        if PREFETCH_QK:
            # Scores of tile j+1 are issued (async wgmma) before the softmax of tile j, so the tensor
            # cores work while the softmax runs (one more [BLOCK_M, BLOCK_N] fp32 tile in registers).
            if start_m > 0:
                s = _scores(q_nope, q_pe, KN.load([seq_start, col_kn]), KPE.load([seq_start, col_kp]))
                for start_n in tl.range(BLOCK_N, start_m, BLOCK_N, loop_unroll_factor=UNROLL):
                    tok = seq_start + start_n
                    s_next = _scores(q_nope, q_pe, KN.load([tok, col_kn]), KPE.load([tok, col_kp]))
                    v = V.load([tok - BLOCK_N, col_v])
                    m_i, l_i, acc = _softmax_pv(s, v, m_i, l_i, acc, qk_scale, start_m, 0, BLOCK_M, BLOCK_N,
                                                False, LAZY_RESCALE, RESCALE_LOG2)
                    s = s_next
                v = V.load([seq_start + start_m - BLOCK_N, col_v])
                m_i, l_i, acc = _softmax_pv(s, v, m_i, l_i, acc, qk_scale, start_m, 0, BLOCK_M, BLOCK_N,
                                            False, LAZY_RESCALE, RESCALE_LOG2)
        else:
            for start_n in tl.range(0, start_m, BLOCK_N, loop_unroll_factor=UNROLL):
                tok = seq_start + start_n
                kn = KN.load([tok, col_kn])
                kp = KPE.load([tok, col_kp])
                v = V.load([tok, col_v])
                m_i, l_i, acc = _softmax_pv(_scores(q_nope, q_pe, kn, kp), v, m_i, l_i, acc, qk_scale,
                                            start_m, start_n, BLOCK_M, BLOCK_N, False, LAZY_RESCALE,
                                            RESCALE_LOG2)
        # Stage 2: the diagonal tile(s), causal mask (key <= query).
        for start_n in tl.range(start_m, hi, BLOCK_N):
            tok = seq_start + start_n
            kn = KN.load([tok, col_kn])
            kp = KPE.load([tok, col_kp])
            v = V.load([tok, col_v])
            m_i, l_i, acc = _softmax_pv(_scores(q_nope, q_pe, kn, kp), v, m_i, l_i, acc, qk_scale, start_m,
                                        start_n, BLOCK_M, BLOCK_N, True, LAZY_RESCALE, RESCALE_LOG2)
    else:
        kn_tile = offs_n[:, None] * stride_knt + offs_dn[None, :]
        kp_tile = offs_n[:, None] * stride_kpt + offs_dr[None, :]
        v_tile = offs_n[:, None] * stride_vt + offs_dv[None, :]
        kn_base = KN + tok0 * stride_knt + head * stride_knh
        kp_base = KPE + tok0 * stride_kpt + head * stride_kph
        v_base = V + tok0 * stride_vt + head * stride_vh
        for _ in tl.range(0, start_m, BLOCK_N, loop_unroll_factor=UNROLL):
            kn = tl.load(kn_base + kn_tile)
            kp = tl.load(kp_base + kp_tile)
            v = tl.load(v_base + v_tile)
            m_i, l_i, acc = _softmax_pv(_scores(q_nope, q_pe, kn, kp), v, m_i, l_i, acc, qk_scale, start_m, 0,
                                        BLOCK_M, BLOCK_N, False, LAZY_RESCALE, RESCALE_LOG2)
            kn_base += BLOCK_N * stride_knt
            kp_base += BLOCK_N * stride_kpt
            v_base += BLOCK_N * stride_vt
        # Stage 2: the diagonal tiles: causal mask, and the sequence end on the loads.
        for start_n in tl.range(start_m, hi, BLOCK_N):
            col_ok = start_n + offs_n < seqlen
            kn = tl.load(kn_base + kn_tile, mask=col_ok[:, None], other=0.0)
            kp = tl.load(kp_base + kp_tile, mask=col_ok[:, None], other=0.0)
            v = tl.load(v_base + v_tile, mask=col_ok[:, None], other=0.0)
            m_i, l_i, acc = _softmax_pv(_scores(q_nope, q_pe, kn, kp), v, m_i, l_i, acc, qk_scale, start_m,
                                        start_n, BLOCK_M, BLOCK_N, True, LAZY_RESCALE, RESCALE_LOG2)
            kn_base += BLOCK_N * stride_knt
            kp_base += BLOCK_N * stride_kpt
            v_base += BLOCK_N * stride_vt

    out = acc / l_i[:, None]
    o_ptrs = O + row0 * stride_ot + head * stride_oh + offs_m[:, None] * stride_ot + offs_dv[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


# ---- configs ------------------------------------------------------------------------------------------
# A config: tiles, warps, pipeline depth, the switches above, and optionally `maxnreg` (a register cap:
# 2 programs of 8 warps share an SM only at <= 128 registers per thread; the TMA and lazy-rescale kernels
# compile to 130-148 without the cap and to <= 128 without spills with it).
# Per-SM arithmetic (Hopper: 64K registers, 227 KB shared memory per block, 228 KB per SM):
#   128x32 s3: q 48 KB + 3 x (K 12 KB + V 8 KB) = 108 KB -> two programs per SM (16 warps), one's softmax
#              runs while the other's wgmma does; but QK^T as m64n32 wgmma reads more shared memory per
#              flop than the SM can deliver (A 2 KB + B 1 KB per 16 tensor-core cycles).
#   128x64 s2: 128 KB, ~152-190 registers -> one program per SM (PREFETCH_QK: ~177 registers, 144 KB).
#   256x64 w16 s2: 176 KB, 128 registers -> one program of 4 warpgroups per SM, half the K/V traffic per
#              flop of a 128-row tile, m64n64 QK^T.
#   64xN w4: one warpgroup per program, twice the K/V traffic per flop.
# Measured before this sweep (H200, T = 8192, TFLOP/s, cp.async kernel): 128x64 s3 423, 128x64 s2 415,
# 128x32 s4 325, 128x32 s3 435-463, 64x64 w4 s3 251.
_BASE = {"TMA": False, "LAZY_RESCALE": False, "HEAD_MAJOR": False, "PREFETCH_QK": False, "UNROLL": 1}


def _cfg(bm, bn, warps, stages, maxnreg=None, **switches) -> dict:
    c = {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": warps, "num_stages": stages, **_BASE, **switches}
    if maxnreg:
        c["maxnreg"] = maxnreg
    return c


# The previous default (cp.async, 128x32, 3 stages) first: the sweep's reference point.
PREVIOUS_DEFAULT = _cfg(128, 32, 8, 3)
CANDIDATES = [  # the likeliest first: a sweep cut short by its time budget still covers them
    PREVIOUS_DEFAULT,
    _cfg(128, 64, 8, 3, TMA=True, PREFETCH_QK=True),
    _cfg(128, 64, 8, 2, TMA=True, PREFETCH_QK=True),
    _cfg(128, 32, 8, 3, 128, TMA=True),
    _cfg(128, 32, 8, 3, 128, LAZY_RESCALE=True),
    _cfg(128, 32, 8, 3, 128, TMA=True, LAZY_RESCALE=True),
    _cfg(256, 64, 16, 2, TMA=True),
    _cfg(256, 64, 16, 3, TMA=True),
    _cfg(256, 32, 16, 3, TMA=True),
    _cfg(128, 64, 8, 2, TMA=True, PREFETCH_QK=True, UNROLL=2),
    _cfg(128, 64, 8, 3, TMA=True, PREFETCH_QK=True, HEAD_MAJOR=True),
    _cfg(128, 32, 8, 3, TMA=True, PREFETCH_QK=True),
    _cfg(256, 32, 16, 3, TMA=True, PREFETCH_QK=True),
    _cfg(128, 32, 8, 2, 128, TMA=True),
    _cfg(128, 32, 8, 3, 128, TMA=True, HEAD_MAJOR=True),
    _cfg(128, 64, 8, 2, TMA=True),
    _cfg(128, 64, 8, 3, TMA=True),
    _cfg(128, 64, 8, 2, TMA=True, LAZY_RESCALE=True),
    _cfg(128, 64, 8, 2, TMA=True, UNROLL=2),
    _cfg(256, 64, 16, 2, TMA=True, LAZY_RESCALE=True),
    _cfg(128, 64, 8, 2),
    _cfg(128, 128, 8, 2, TMA=True),
    _cfg(64, 64, 4, 2, TMA=True),
    _cfg(64, 32, 4, 2, TMA=True),
]
# Used when no tuned config is recorded (data/tuned/separate_qkv.json, written by scripts/gpu_mla.py
# from its sweep) and by the interpreter tests' shapes scaled down.
FALLBACK = PREVIOUS_DEFAULT
TUNED_PATH = "data/tuned/separate_qkv.json"
_pinned: dict | None = None


def config_name(cfg: dict) -> str:
    """Short label, e.g. 'tma 128x32 w8 s3 r128 lazy'."""
    parts = ["tma" if cfg.get("TMA") else "cp.async", f"{cfg['BLOCK_M']}x{cfg['BLOCK_N']}",
             f"w{cfg['num_warps']}", f"s{cfg['num_stages']}"]
    if cfg.get("maxnreg"):
        parts.append(f"r{cfg['maxnreg']}")
    if cfg.get("LAZY_RESCALE"):
        parts.append("lazy")
    if cfg.get("PREFETCH_QK"):
        parts.append("prefetch")
    if cfg.get("UNROLL", 1) > 1:
        parts.append(f"unroll{cfg['UNROLL']}")
    if cfg.get("HEAD_MAJOR"):
        parts.append("head-major")
    return " ".join(parts)


def tuned_config() -> dict:
    """The config the last GPU sweep picked (data/tuned/separate_qkv.json), else FALLBACK."""
    import json
    from pathlib import Path

    if _pinned is not None:
        return dict(_pinned)
    path = Path(__file__).resolve().parents[2] / TUNED_PATH
    try:
        return {**_BASE, **json.loads(path.read_text())["config"]}
    except (OSError, ValueError, KeyError):
        return dict(FALLBACK)


def pin_config(cfg: dict | None) -> None:
    """Use `cfg` for every launch without an explicit config (None: back to the tuned one)."""
    global _pinned
    _pinned = None if cfg is None else {**_BASE, **cfg}


def tma_ok(*tensors) -> bool:
    """TMA needs 16-byte aligned bases and 16-byte multiples for every stride but the last."""
    for t in tensors:
        if t.data_ptr() % 16 or any((s * t.element_size()) % 16 for s in t.stride()[:-1]):
            return False
    return True


def _window(t, head_stride: int, num_heads: int, d: int, block_n: int):
    """A [T, H, D] strided view (or [T, D] shared by the heads: head_stride 0) as a 2-D TMA window
    [T, (H-1)*head_stride + D] with row stride = token stride; head h's tile is at column h*head_stride."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    cols = (num_heads - 1) * head_stride + d
    return TensorDescriptor(t, [t.shape[0], cols], [t.stride(0), 1], [block_n, d])


def launch(q, k_nope, k_pe, v, out, cu_seqlens, num_seqs: int, max_seqlen: int, scale: float,
           config: dict | None = None):
    """Launch on torch's current stream with `config` (None: `tuned_config()`). A TMA config on views
    TMA cannot describe (unaligned strides) runs the same tiles through cp.async instead."""
    t, h, dq = q.shape
    dn, dv = k_nope.shape[-1], v.shape[-1]
    dr = dq - dn
    kph = k_pe.stride(1) if k_pe.dim() == 3 else 0
    cfg = {**_BASE, **(config if config is not None else tuned_config())}
    bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
    if cfg["TMA"] and not tma_ok(k_nope, k_pe, v):
        cfg["TMA"] = False
    if cfg["TMA"]:
        kn_arg = _window(k_nope, k_nope.stride(1), h, dn, bn)
        kp_arg = _window(k_pe, kph, h, dr, bn)
        v_arg = _window(v, v.stride(1), h, dv, bn)
    else:
        kn_arg, kp_arg, v_arg = k_nope, k_pe, v
    m_blocks = triton.cdiv(max_seqlen, bm)
    grid = (h, m_blocks, num_seqs) if cfg["HEAD_MAJOR"] else (m_blocks, h, num_seqs)
    compiled = mla_fwd_kernel[grid](
        q, kn_arg, kp_arg, v_arg, out, cu_seqlens,
        q.stride(0), q.stride(1), k_nope.stride(0), k_nope.stride(1), k_pe.stride(0), kph,
        v.stride(0), v.stride(1), out.stride(0), out.stride(1), scale * LOG2E,
        D_NOPE=dn, D_ROPE=dr, D_V=dv, BLOCK_M=bm, BLOCK_N=bn, RESCALE_LOG2=RESCALE_LOG2, **cfg)
    global last_compiled
    last_compiled = compiled  # registers / spills of the last launch, for reports
    return out


last_compiled = None
