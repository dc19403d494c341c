"""wo GEMM step 9: row-owned CTAs for decode, one kernel per call (kernels/wo_gemm_v9.cu).

The stream-K kernels (v4-v6, v5) split K across CTAs and end every call with fp32 partials in a workspace and a
second kernel, wo_finalize. v9 gives each CTA whole output rows over the full K: the weight is the mma.sync B
operand (8 rows per "slice"), the tokens the m16 A operand, so wo's 896 slices split 6 or 7 per CTA on 132 SMs;
the CTA's warps sum their partials in shared memory and write bf16 out. M <= 8, 16 or 32 (the build's XR).

The v9 stream (prepare_stream_v9, once per weight): uint8 [K/128, N/8, 576]: per 128-k chunk c and slice s,
32 lanes x 16 B of code words, then 64 scale bytes.
- lane l = 4g + t, word jw (0..3): the 8 codes of row 8s + g at k = 128c + 32jw + 8t + 0..7, bits placed for the
  rotate decode (wo_gemm_v5.word_sources("rot")): register r0 gets k + 0, 1; r2 k + 2, 3; r1 k + 4, 5; r3 k + 6, 7;
- scale bytes: at 8g + 4h + jw the re-encoded scale (wo_gemm._reencode_scales) of row 8s + g, block 8c + 2jw + h
  (lane t reads h = t >> 1). Codes of zero-scale blocks are zeroed, as in v4.

v9p (w4a16_gemm_v9p, the H200 dispatcher's kernel at M = 1) keeps the row-owned CTAs but makes the weight the mma A
operand: a CTA's slices pair up as rows g / g + 8 of m16 tiles and an odd count's last slice is a lone tile, so each
HMMA covers 256 weight elements (v9's 128). Which slices pair depends on each CTA's first slice, so its stream is
laid out for a launch grid (prepare_stream_v9p(w, grid), cached per grid on the prepared weight; layout in
kernels/wo_gemm_v9.cu). With ordinary launches its producer copies each stage's x before the stage's weight
(x_first), with PDL the first stages' weight ahead of the wait for the previous kernel. The CPU tests check both
streams through emulations of the kernels' reads and decode (decode_stream_v9 / decode_stream_v9p).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..runtime import InputError
from . import nvfp4
from .nvfp4 import NVFP4Tensor
from .wo_gemm import (
    PreparedWeight,
    _reencode_scales,
    check_gemm_input,
    check_prepare_input,
    decode_reencoded_scales,
    gemm_output,
)
from .wo_gemm_v5 import MAX_DYNAMIC_SMEM, decode_word_regs, word_sources

V9_CHUNK_K = 128
V9_CHUNK_BYTES = 576
# fragment register r of the rotate decode -> the k offset (within the word's 8) of its low element
V9_REG_K = (0, 4, 2, 6)


def _rot_words(parts) -> torch.Tensor:
    """Code words of the rotate layout: parts[r][e] (int64 code tensors, one shape) is the code of fragment register
    r's element e (0: low bf16 half, 1: high)."""
    src = word_sources("rot")
    word = torch.zeros_like(parts[0][0])
    for r in range(4):
        for e in (0, 1):
            for bit, pos in enumerate(src[r][e]):
                word |= ((parts[r][e] >> bit) & 1) << pos
    return word


def _word_bytes(word: torch.Tensor) -> torch.Tensor:
    """int64 code words [...] -> their little-endian bytes, uint8 [..., 4]."""
    return torch.stack([(word >> (8 * i)) & 0xFF for i in range(4)], dim=-1).to(torch.uint8)


def _words_of(b: torch.Tensor) -> torch.Tensor:
    """int64 bytes [..., 4] (little-endian) -> the code words [...] (the inverse of _word_bytes)."""
    return b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)


def _half_value(reg: torch.Tensor, e: int, s: torch.Tensor) -> torch.Tensor:
    """bf16 half e (0: low) of decoded fragment registers, as fp32 times the scale s: the rotate decode leaves
    e2m1 * 2^-126 in each half (the kernels fold the 2^126 into the output scale)."""
    v = (((reg >> (16 * e)) & 0xFFFF).to(torch.int32) << 16).view(torch.float32)
    return v * 2.0**126 * s




def prepare_stream_v9(w: NVFP4Tensor, rows_per_step: int = 1024) -> torch.Tensor:
    """NVFP4Tensor [N, K] (linear scales, per-tensor global scale, N % 16 == 0, K % 128 == 0) -> the v9 stream,
    uint8 [K/128, N/8, 576] on the weight's device. Exact: a relayout plus the v4 scale re-encoding."""
    N, K = check_prepare_input(w, V9_CHUNK_K, "the v9 stream")
    nc = K // V9_CHUNK_K
    parts = []
    for r0 in range(0, N, rows_per_step):
        r1 = min(N, r0 + rows_per_step)
        S = (r1 - r0) // 8
        u = _reencode_scales(w.scales[r0:r1])  # [R, K/16]
        codes = nvfp4.unpack_nibbles(w.codes[r0:r1]).view(r1 - r0, K // 16, 16)
        codes = torch.where((u == 0)[..., None], torch.zeros_like(codes), codes).to(torch.int64)
        c = codes.view(S, 8, nc, 4, 4, 8)  # [slice, g, chunk, jw, t, kk]: k = 128 chunk + 32 jw + 8 t + kk
        word = _rot_words([[c[..., k0], c[..., k0 + 1]] for k0 in V9_REG_K])
        wbytes = _word_bytes(word.permute(2, 0, 1, 4, 3))  # [chunk, slice, g, t, jw, 4]
        # scales [slice, g, chunk, jw, h] (block 8 chunk + 2 jw + h) -> [chunk, slice, g, h, jw]
        us = u.view(S, 8, nc, 4, 2).permute(2, 0, 1, 4, 3).reshape(nc, S, 64)
        parts.append(torch.cat([wbytes.reshape(nc, S, 512), us], dim=2))
    return torch.cat(parts, dim=1).contiguous()


def decode_stream_v9(data: torch.Tensor, global_scale: torch.Tensor, shape) -> torch.Tensor:
    """Emulate the kernel's reads and decode of the v9 stream (the same lane, word and scale indexing as
    w4a16_v9, the rotate decode bit for bit): fp32 weight e2m1 * sf * (1/g) [N, K]. CPU-capable (tests)."""
    N, K = shape
    nc, S = K // V9_CHUNK_K, N // 8
    d = data.to(torch.int64).reshape(nc, S, V9_CHUNK_BYTES)
    cb = d[..., :512].reshape(nc, S, 8, 4, 4, 4)  # [chunk, slice, g, t, jw, byte]
    words = _words_of(cb)  # [chunk, slice, g, t, jw]
    regs = decode_word_regs(words, "rot")
    sb = d[..., 512:].reshape(nc, S, 8, 2, 4)  # [chunk, slice, g, h, jw]
    s = decode_reencoded_scales(sb.to(torch.uint8)).float()
    g_inv = torch.div(torch.ones_like(global_scale.float()), global_scale.float()).to(s.device)
    s = s * g_inv
    s_lane = s[:, :, :, [0, 0, 1, 1], :]  # lane t reads h = t >> 1: [chunk, slice, g, t, jw]
    out = torch.zeros((S, 8, nc, 4, 4, 8), dtype=torch.float32, device=d.device)  # [slice, g, chunk, jw, t, kk]
    for r, reg in enumerate(regs):
        for e in (0, 1):
            out[..., V9_REG_K[r] + e] = _half_value(reg, e, s_lane).permute(1, 2, 0, 4, 3)
    return out.reshape(N, K)


@dataclass(frozen=True)
class V9Config:
    """Template parameters of w4a16_v9: MAXS slices per CTA at most, XR x rows staged (M <= XR), WARPS consumer
    warps, CH 128-k chunks per ring stage, STAGES ring depth; diag 1: the stream-only twin (no output), 2: decode
    without the mma, 3: the mma without the decode (diagnostics: never validated). The grid is min(SMs, N / 8) CTAs of 6-7 slices on wo."""

    maxs: int
    xr: int
    warps: int
    ch: int
    stages: int
    diag: int = 0

    @property
    def expr(self) -> str:
        d = f", {self.diag}" if self.diag else ""
        return f"w4a16_v9<{self.maxs}, {self.xr}, {self.warps}, {self.ch}, {self.stages}{d}>"

    @property
    def tokens(self) -> int:
        return self.xr

    @property
    def rows(self) -> int:  # the row granularity (N must be a multiple)
        return 8

    @property
    def stage_bytes(self) -> int:
        return self.ch * self.maxs * V9_CHUNK_BYTES + self.xr * (self.ch * 256 + 64)

    @property
    def smem(self) -> int:
        return self.stages * self.stage_bytes + 16 * self.stages

    @property
    def threads(self) -> int:
        return (self.warps + 1) * 32

    def __str__(self) -> str:
        d = {0: "", 1: "_diag_stream", 2: "_diag_decode_only", 3: "_diag_mma_only"}[self.diag]
        return f"v9_s{self.maxs}_x{self.xr}_w{self.warps}_ch{self.ch}_st{self.stages}{d}"


# Instantiated in kernels/wo_gemm_v9.cu.
V9_KERNELS = [V9Config(7, 8, 8, 8, 4), V9Config(7, 8, 8, 16, 2), V9Config(7, 8, 12, 12, 3),
              V9Config(7, 16, 8, 8, 3), V9Config(7, 16, 12, 12, 2), V9Config(7, 32, 4, 4, 4)]
V9_DIAGNOSTICS = [V9Config(7, 8, 8, 8, 4, d) for d in (1, 2, 3)]


def v9_candidates(M: int) -> list[V9Config]:
    """The v9 builds that serve M tokens (M <= XR), smallest XR first."""
    return [k for k in V9_KERNELS if k.xr >= M and k.xr == min(c.xr for c in V9_KERNELS if c.xr >= M)]


def _cached_stream(pw: PreparedWeight, key, build) -> tuple[torch.Tensor, bool]:
    """(the stream under `key` in pw's stream cache, built by build() on first use; whether it was built just now)."""
    if pw.data_v5 is None:
        pw.data_v5 = {}
    fresh = key not in pw.data_v5
    if fresh:
        pw.data_v5[key] = build()
    return pw.data_v5[key], fresh


def v9_stream(pw: PreparedWeight) -> torch.Tensor:
    """The v9 stream of a prepared weight, built on first use and cached on it (66 MB for wo)."""
    return _cached_stream(pw, "v9", lambda: prepare_stream_v9(pw.source))[0]


def _check_config(cfg, M: int, K: int, what: str) -> None:
    """The token and K limits a v9 / v9p config puts on x, named."""
    if M > cfg.tokens:
        raise InputError(f"x.shape[0] (M): config {cfg} serves M <= {cfg.tokens}, got {M}")
    if K % V9_CHUNK_K:
        raise InputError(f"x.shape[1] (K): expected a multiple of {V9_CHUNK_K} for the {what} kernel, got {K}")


def v9_grid(N: int, sms: int, cfg: V9Config) -> int:
    """CTAs for N rows: one per SM (at most one per slice); raises if a CTA would own more than cfg.maxs slices."""
    slices = N // 8
    grid = min(sms, slices)
    if math.ceil(slices / grid) > cfg.maxs:
        raise InputError(f"w.shape[0] (N): config {cfg} serves N <= {8 * cfg.maxs * sms} on {sms} SMs "
                         f"({cfg.maxs} slices of 8 rows per CTA), got {N}")
    return grid


def w4a16_gemm_v9(x: torch.Tensor, pw: PreparedWeight, config: V9Config | None = None,
                  out: torch.Tensor | None = None, enable_pdl: bool = False) -> torch.Tensor:
    """Fused NVFP4 W4A16 GEMM with row-owned CTAs (no split-K, no workspace, no second kernel): x bf16 [M, K]
    (M <= config.xr, K % 128 == 0) @ dequant(W)^T -> bf16 [M, N]. pw: a PreparedWeight (its v9 stream is built
    on first use). enable_pdl: programmatic dependent launch (the first stages' weight copies go out before
    griddepcontrol.wait; x is read and out written only after it; a call that builds the stream launches
    without PDL)."""
    from ..runtime import get_kernel, launch

    M, N, K = check_gemm_input(x, pw, 32, "the v9 kernel")
    cfg = config or v9_candidates(M)[0]
    _check_config(cfg, M, K, "v9")
    if cfg.smem > MAX_DYNAMIC_SMEM:
        raise InputError(f"config {cfg}: needs {cfg.smem} bytes of shared memory, more than {MAX_DYNAMIC_SMEM}")
    out = gemm_output(out, x, M, N)
    stream, fresh = _cached_stream(pw, "v9", lambda: prepare_stream_v9(pw.source))
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    launch(get_kernel("wo_gemm_v9", cfg.expr), (v9_grid(N, sms, cfg), 1, 1), cfg.threads,
           (x, stream, pw.global_scale, out, M, N, K), shared_mem=cfg.smem, enable_pdl=enable_pdl and not fresh)
    return out


# ---------------------------------------------------------------------------------------------------------------
# v9p: the weight as the mma A operand, the CTA's slices in pairs (kernels/wo_gemm_v9.cu, w4a16_v9p)
# ---------------------------------------------------------------------------------------------------------------

def cta_slices(S: int, grid: int) -> list[tuple[int, int]]:
    """(first slice, slice count) of each of `grid` CTAs over S slices of 8 rows: equal shares, the first S % grid
    CTAs one more (the kernels' split)."""
    q, rem = divmod(S, grid)
    return [(b * q + min(b, rem), q + (1 if b < rem else 0)) for b in range(grid)]


def prepare_stream_v9p(w: NVFP4Tensor, grid: int) -> torch.Tensor:
    """NVFP4Tensor [N, K] (linear scales, per-tensor global scale, N % 16 == 0, K % 128 == 0) -> the v9p stream for
    a launch on `grid` CTAs, uint8 [K/128, N/8, 576] (each CTA's slices: cnt // 2 pair units, then a lone unit if
    cnt is odd; see kernels/wo_gemm_v9.cu). Exact: a relayout plus the v4 scale re-encoding."""
    N, K = check_prepare_input(w, V9_CHUNK_K, "the v9p stream")
    S, nc = N // 8, K // V9_CHUNK_K
    if not 1 <= grid <= S:
        raise InputError(f"grid: expected 1..{S} CTAs (one slice of 8 rows at least each), got {grid}")
    data = torch.empty((nc, S, V9_CHUNK_BYTES), dtype=torch.uint8, device=w.codes.device)
    for lo, cnt in cta_slices(S, grid):
        r0, r1 = 8 * lo, 8 * (lo + cnt)
        u = _reencode_scales(w.scales[r0:r1])  # [R, K/16]
        codes = nvfp4.unpack_nibbles(w.codes[r0:r1]).view(r1 - r0, K // 16, 16)
        codes = torch.where((u == 0)[..., None], torch.zeros_like(codes), codes).to(torch.int64)
        c = codes.view(cnt, 8, nc, 2, 4, 16)  # [slice, g, chunk, atom, t, kk]: k = 128 chunk + 64 atom + 16 t + kk
        us = u.view(cnt, 8, nc, 2, 4)  # block 8 chunk + 4 atom + t
        units = []
        for p in range(cnt // 2):
            A, B = c[2 * p], c[2 * p + 1]  # rows g and g + 8 of the m16 tile
            # step j' of an atom: kk = 4 j' + 2 pair + e -> [g, chunk, atom, t, j']
            At, Bt = A.view(8, nc, 2, 4, 4, 4), B.view(8, nc, 2, 4, 4, 4)
            word = _rot_words([[At[..., 0], At[..., 1]], [Bt[..., 0], Bt[..., 1]],
                               [At[..., 2], At[..., 3]], [Bt[..., 2], Bt[..., 3]]])
            wb = _word_bytes(word.permute(1, 2, 0, 3, 4)).reshape(nc, 1024)  # [chunk, atom, g, t, j', 4]
            sc = torch.stack([us[2 * p], us[2 * p + 1]], dim=-1)  # [g, chunk, atom, t, A/B]
            sb = sc.permute(1, 0, 3, 2, 4).reshape(nc, 128)  # [chunk, g, t, atom, A/B]
            units += [wb, sb]
        if cnt % 2:
            L = c[cnt - 1].view(8, nc, 2, 4, 2, 8)  # [g, chunk, atom, t, jj, kk8]
            word = _rot_words([[L[..., k0], L[..., k0 + 1]] for k0 in V9_REG_K])
            wb = _word_bytes(word.permute(1, 0, 3, 2, 4)).reshape(nc, 512)  # [chunk, g, t, atom, jj, 4]
            sb = us[cnt - 1].permute(1, 0, 3, 2).reshape(nc, 64)  # [chunk, g, t, atom]
            units += [wb, sb]
        data[:, lo:lo + cnt] = torch.cat(units, dim=1).view(nc, cnt, V9_CHUNK_BYTES)
    return data


def decode_stream_v9p(data: torch.Tensor, global_scale: torch.Tensor, shape, grid: int) -> torch.Tensor:
    """Emulate w4a16_v9p's reads and rotate decode of the v9p stream (the same unit, lane, word and scale indexing):
    fp32 weight e2m1 * sf * (1/g) [N, K]. CPU-capable (tests)."""
    N, K = shape
    S, nc = N // 8, K // V9_CHUNK_K
    d = data.to(torch.int64).reshape(nc, S * V9_CHUNK_BYTES)
    g_inv = torch.div(torch.ones_like(global_scale.float()), global_scale.float()).to(d.device)
    out = torch.zeros((S, 8, nc, 2, 4, 16), dtype=torch.float32, device=d.device)  # [slice, g, chunk, atom, t, kk]

    for lo, cnt in cta_slices(S, grid):
        base = lo * V9_CHUNK_BYTES
        for p in range(cnt // 2):
            ub = d[:, base + 1152 * p: base + 1152 * (p + 1)]
            words = _words_of(ub[:, :1024].reshape(nc, 2, 8, 4, 4, 4))  # [chunk, atom, g, t, j']
            regs = decode_word_regs(words, "rot")
            s = decode_reencoded_scales(ub[:, 1024:].reshape(nc, 8, 4, 2, 2).to(torch.uint8)).float() * g_inv
            sA = s[..., 0].permute(0, 3, 1, 2)[..., None]  # [chunk, atom, g, t, 1]
            sB = s[..., 1].permute(0, 3, 1, 2)[..., None]
            for r, (row, pair) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
                for e in (0, 1):
                    v = _half_value(regs[r], e, sA if row == 0 else sB)  # [chunk, atom, g, t, j']
                    out[lo + 2 * p + row][..., 2 * pair + e::4] = v.permute(2, 0, 1, 3, 4)
        if cnt % 2:
            ub = d[:, base + 1152 * (cnt // 2): base + cnt * V9_CHUNK_BYTES]
            words = _words_of(ub[:, :512].reshape(nc, 8, 4, 2, 2, 4))  # [chunk, g, t, atom, jj]
            regs = decode_word_regs(words, "rot")
            s = decode_reencoded_scales(ub[:, 512:].reshape(nc, 8, 4, 2).to(torch.uint8)).float() * g_inv
            L = out[lo + cnt - 1].view(8, nc, 2, 4, 2, 8)
            for r in range(4):
                for e in (0, 1):
                    v = _half_value(regs[r], e, s[..., None])  # [chunk, g, t, atom, jj]
                    L[..., V9_REG_K[r] + e] = v.permute(1, 0, 3, 2, 4)
    return out.reshape(N, K)


@dataclass(frozen=True)
class V9PConfig:
    """Template parameters of w4a16_v9p: MAXS slices per CTA at most (odd), NT n8 token tiles (M <= 8 NT), WARPS
    consumer warps, CH 128-k chunks per stage (WARPS > CH: groups of CH warps take the stages in turn), STAGES ring
    depth; diag 1 / 2 / 3 / 4: the stream-only, decode-only, mma-only and stream-with-x twins (never validated);
    cl 2: clusters of two CTAs that share x's copies (multicast: x read from L2 once per cluster); er: early release
    (each warp copies its chunks of a stage to registers and frees the stage before the math); prof: clock stamps
    per CTA and stage in the module's v9_prof table (timelines; the math is unchanged); ls: the lone unit's HMMAs in two
    accumulator sets (a dependent chain half as long)."""

    maxs: int
    nt: int
    warps: int
    ch: int
    stages: int
    diag: int = 0
    cl: int = 1
    er: bool = False
    prof: bool = False
    ls: bool = False

    @property
    def expr(self) -> str:
        tail = [str(self.diag), str(self.cl), str(self.er).lower(), str(self.prof).lower(), str(self.ls).lower()]
        defaults = ["0", "1", "false", "false", "false"]
        while tail and tail[-1] == defaults[len(tail) - 1]:
            tail.pop()
        args = [self.maxs, self.nt, self.warps, self.ch, self.stages, *tail]
        return f"w4a16_v9p<{', '.join(map(str, args))}>"

    @property
    def tokens(self) -> int:
        return 8 * self.nt

    @property
    def rows(self) -> int:
        return 8

    @property
    def smem(self) -> int:
        ring = self.stages * (self.ch * self.maxs * V9_CHUNK_BYTES + 8 * self.nt * (self.ch * 256 + 16))
        return ring + 16 * self.stages + 16  # the full and empty barriers, then the output scale

    @property
    def threads(self) -> int:
        return (self.warps + 1) * 32

    def __str__(self) -> str:
        d = {0: "", 1: "_diag_stream", 2: "_diag_decode_only", 3: "_diag_mma_only", 4: "_diag_stream_x"}[self.diag]
        c = (f"_cl{self.cl}" if self.cl > 1 else "") + ("_er" if self.er else "") + ("_prof" if self.prof else "") + ("_ls" if self.ls else "")
        return f"v9p_s{self.maxs}_nt{self.nt}_w{self.warps}_ch{self.ch}_st{self.stages}{c}{d}"


V9P_KERNELS = [V9PConfig(7, 1, 8, 8, 4), V9PConfig(7, 1, 8, 16, 2), V9PConfig(7, 1, 12, 12, 3),
               V9PConfig(7, 1, 16, 8, 4), V9PConfig(7, 1, 16, 4, 8), V9PConfig(7, 2, 8, 8, 3), V9PConfig(7, 2, 16, 8, 3),
               V9PConfig(7, 1, 8, 8, 4, cl=2), V9PConfig(7, 1, 12, 12, 3, cl=2), V9PConfig(7, 1, 16, 8, 4, cl=2),
               V9PConfig(7, 2, 8, 8, 3, cl=2)] + [
    V9PConfig(*c, er=True) for c in ((7, 1, 8, 8, 4), (7, 1, 8, 16, 2), (7, 1, 12, 12, 3), (7, 1, 16, 8, 4),
                                     (7, 1, 16, 4, 8), (7, 2, 8, 8, 3))] + [
    V9PConfig(7, 1, 8, 8, 4, ls=True), V9PConfig(7, 1, 16, 8, 4, er=True, ls=True),
    V9PConfig(7, 1, 12, 12, 3, er=True, ls=True)]
V9P_DIAGNOSTICS = [V9PConfig(7, 1, 8, 8, 4, d) for d in (1, 2, 3, 4)] + [V9PConfig(7, 1, 8, 8, 4, 4, cl=2)]
# Timeline builds (scripts/gpu_wo_v9_timeline.py): a 16-warp early-release build and an 8-warp one without early
# release, each with its stream-only twin, and the 8-warp build's decode-only and mma-only twins.
V9P_TIMELINES = [V9PConfig(7, 1, 16, 8, 4, d, er=True, prof=True) for d in (0, 1)] + [
    V9PConfig(7, 1, 8, 8, 4, d, prof=True) for d in (0, 1, 2, 3)]


# The builds the GPU benchmark tunes at M <= 8 (wo_gemm.fused_families): the two fastest of the A/B runs at M = 1 and
# one without early release (docs/notes_wo_gemm.md, twenty-second pass), and the 8-warp build that x-first copies made
# as fast (twenty-third pass).
V9P_TUNED = [V9PConfig(7, 1, 8, 8, 4), V9PConfig(7, 1, 16, 8, 4, er=True), V9PConfig(7, 1, 12, 12, 3, er=True),
             V9PConfig(7, 1, 16, 8, 4)]


def v9p_tuned_candidates(M: int) -> list[V9PConfig]:
    """The v9p builds the wo benchmark validates and times at this M (M <= 8)."""
    return list(V9P_TUNED) if M <= 8 else []


def v9p_candidates(M: int) -> list[V9PConfig]:
    """The v9p builds that serve M tokens, smallest token tile first."""
    fits = [k for k in V9P_KERNELS if k.tokens >= M]
    return [k for k in fits if k.nt == min(c.nt for c in fits)] if fits else []


def v9p_stream(pw: PreparedWeight, grid: int) -> torch.Tensor:
    """The v9p stream of a prepared weight for `grid` CTAs, built on first use and cached on it."""
    return _cached_stream(pw, ("v9p", grid), lambda: prepare_stream_v9p(pw.source, grid))[0]


def w4a16_gemm_v9p(x: torch.Tensor, pw: PreparedWeight, config: V9PConfig | None = None,
                   out: torch.Tensor | None = None, enable_pdl: bool = False,
                   x_first: bool | None = None) -> torch.Tensor:
    """Fused NVFP4 W4A16 GEMM with row-owned CTAs and the weight as the mma A operand (slices in pairs): x bf16
    [M, K] (M <= 8 config.nt, K % 128 == 0) @ dequant(W)^T -> bf16 [M, N], one kernel per call. pw: a
    PreparedWeight (its v9p stream for this GPU's grid is built on first use). enable_pdl: as w4a16_gemm_v9.
    x_first: the producer copies each stage's x before its weight (default: with ordinary launches; with PDL the
    first stages' weight copies go out before the wait for the previous kernel, x's after it)."""
    from ..runtime import get_kernel, launch
    from ..runtime.tma import launch_by_value, max_active_clusters

    M, N, K = check_gemm_input(x, pw, 16, "the v9p kernel")
    cfg = config or v9p_candidates(M)[0]
    _check_config(cfg, M, K, "v9p")
    out = gemm_output(out, x, M, N)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    grid = v9_grid(N, sms, cfg)
    if grid % cfg.cl:
        raise InputError(f"w.shape[0] (N): config {cfg} launches clusters of {cfg.cl} CTAs, so N / 8 = {N // 8} slices "
                         f"must give a CTA count ({grid}) divisible by {cfg.cl}")
    stream, fresh = _cached_stream(pw, ("v9p", grid), lambda: prepare_stream_v9p(pw.source, grid))
    func = get_kernel("wo_gemm_v9", cfg.expr)
    pdl = enable_pdl and not fresh
    args = (x, stream, pw.global_scale, out, M, N, K, int(not pdl if x_first is None else x_first))
    if cfg.cl == 1:
        launch(func, (grid, 1, 1), cfg.threads, args, shared_mem=cfg.smem, enable_pdl=pdl)
        return out
    if grid > cfg.cl * max_active_clusters(func, cfg.cl, cfg.threads, cfg.smem):
        raise InputError(f"config {cfg}: {grid // cfg.cl} clusters of {cfg.cl} CTAs must run at once on this GPU; it runs "
                         f"{max_active_clusters(func, cfg.cl, cfg.threads, cfg.smem)}")
    launch_by_value(func, grid, cfg.threads, args, shared_mem=cfg.smem, enable_pdl=pdl, cluster=cfg.cl)
    return out
