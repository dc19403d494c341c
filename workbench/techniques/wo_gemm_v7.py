"""wo GEMM step 7: the weight as the wgmma B operand, decoded into shared memory (kernels/wo_gemm_v7.cu).

v5 (wo_gemm_v5.py) decodes the weight into the A registers of wgmma.m64nTOKPk16: one instruction per
64 x 16 weights. Its diagnostic build without any decode (DIAG 7) still took ~29 us at M = 32 and ~31 us
at M = 64 on an H100 (~67-70 SM cycles per instruction in place, where the instruction alone runs at
16-32: scripts/gpu_wgmma_rate.py), so the wgmma side as v5 runs it, not the decode or the stream, holds v5
above the weight-read bound. v7 tests fewer, wider instructions: the tokens (padded to 64) are the MMA's M
and the weight rows its N, one wgmma.m64nNBk16 per NB x 16 weights (NB = 128 per warpgroup), with x as the
register A operand (ldmatrix from the TMA-loaded tile) and the decoded weight stored to shared memory by
stmatrix in the 128-byte-swizzled K-major layout. Measured slower than v5 (docs/notes_wo_gemm.md). It
reads the v5 stream grouped by unit with scale pairs (v5_stream(pw, 256, rows / 16, True)); always
reduce-only, into a token-major workspace that wo_finalize_tm converts (one 16-byte store per 8 outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..runtime import InputError
from .wo_gemm import WS_UNIT_PAIRS, PreparedWeight, _workspace, check_gemm_input, gemm_output
from .wo_gemm_v5 import MAX_DYNAMIC_SMEM, V5_BLOCK_K, block_bytes, v5_stream, v5_stream_ready

V7_MAX_M = 64


@dataclass(frozen=True)
class V7Config:
    """Template parameters of w4a16_v7: TOKP token rows of the x box (32 or 64; >= M), NB weight rows
    per consumer warpgroup (the wgmma N: 128 or 256), NWG consumer warpgroups, STAGES units (NB * NWG
    rows x 256 k) in flight, NBUF decoded-weight buffers per warpgroup; s0 / grab: the launch's work
    split (grab > 0: the first s0 units of each CTA's share static, then grabs of `grab` units)."""

    tokp: int
    nb: int = 128
    nwg: int = 2
    stages: int = 3
    nbuf: int = 2
    s0: int = 0
    grab: int = 0

    red = True  # always reduce-only (wo_finalize_tm after the kernel)

    @property
    def expr(self) -> str:
        return f"w4a16_v7<{self.tokp}, {self.nb}, {self.nwg}, {self.stages}, {self.nbuf}>"

    @property
    def rows(self) -> int:
        return self.nb * self.nwg

    @property
    def threads(self) -> int:
        return self.nwg * 128 + 32

    @property
    def units(self) -> int:  # for the wo shape
        return (7168 // self.rows) * (16384 // V5_BLOCK_K)

    @property
    def smem(self) -> int:
        w_stage = (self.rows // 16) * block_bytes(V5_BLOCK_K)
        x_stage = (V5_BLOCK_K // 64) * self.tokp * 128
        b_bufs = self.nwg * self.nbuf * self.nb * 128
        return self.stages * (w_stage + x_stage) + b_bufs + 16 * self.stages + 1024

    def with_work(self, s0: int = 0, grab: int = 0) -> V7Config:
        return V7Config(self.tokp, self.nb, self.nwg, self.stages, self.nbuf, s0, grab)

    def __str__(self) -> str:
        wk = f"_s0{self.s0}_g{self.grab}" if self.grab else ""
        return f"v7_n{self.tokp}_nb{self.nb}_wg{self.nwg}_s{self.stages}_b{self.nbuf}{wk}"


# Instantiated in kernels/wo_gemm_v7.cu.
V7_KERNELS = [V7Config(32, 128, 2, 3, 2), V7Config(64, 128, 2, 2, 2)]


def v7_tokp_for(M: int) -> int:
    for n in (32, 64):
        if M <= n:
            return n
    raise InputError(f"x.shape[0] (M): the v7 kernel serves M <= {V7_MAX_M}, got {M}")


def default_v7_config(M: int) -> V7Config:
    return next(k for k in V7_KERNELS if k.tokp == v7_tokp_for(M))


def v7_candidates(M: int, sms: int = 132) -> list[V7Config]:
    """The builds whose TOKP suits M, each static and with grabs of one unit after 3/4 of the share."""
    n = v7_tokp_for(M)
    return [w for k in V7_KERNELS if k.tokp == n
            for w in (k, k.with_work(max(1, int(0.75 * k.units / sms)), 1))]


def finalize_tm(ws: torch.Tensor, global_scale: torch.Tensor, out: torch.Tensor, unit: float = WS_UNIT_PAIRS) -> None:
    """wo_finalize_tm after a v7 launch: out[tok, n] = bf16(ws[tok * N + n] * unit / g), ws zeroed; with PDL
    (it may start while the GEMM runs and waits for it in griddepcontrol.wait)."""
    from ..runtime import get_kernel, launch

    M, N = out.shape
    if N % 8:
        raise InputError(f"finalize_tm: expected N % 8 == 0, got N={N}")
    launch(get_kernel("wo_gemm_v7", "wo_finalize_tm"), (math.ceil(M * N / 8 / 256), 1, 1), 256,
           (ws, global_scale, out, M, N, float(unit)), enable_pdl=True)


def launch_weight_b_gemm(kernel: str, cfg, x: torch.Tensor, pw: PreparedWeight, out: torch.Tensor | None,
                         enable_pdl: bool, m_max: int, box_rows: int) -> torch.Tensor:
    """The launch shared by v7 and v8 (kernels/wo_gemm_v7.cu, wo_gemm_v8.cu): checks, the grouped scale-pairs
    v5 stream of cfg.rows rows per unit, the reduce-only GEMM (x as TMA boxes of box_rows x 64), then
    wo_finalize_tm. A call that builds the stream launches without PDL (the GEMM reads the weight before
    griddepcontrol.wait)."""
    from ..runtime import get_kernel
    from ..runtime.tma import launch_by_value, tensor_map_2d

    M, N, K = check_gemm_input(x, pw, m_max, f"the {kernel} kernel")
    if box_rows < M:
        raise InputError(f"config {cfg}: serves M <= {box_rows}, got M = {M}")
    if N % cfg.rows or K % V5_BLOCK_K:
        raise InputError(f"w.shape: expected N % {cfg.rows} == 0 and K % {V5_BLOCK_K} == 0 for config {cfg}, "
                         f"got {[N, K]}")
    if cfg.smem > MAX_DYNAMIC_SMEM:
        raise InputError(f"config {cfg}: needs {cfg.smem} B of shared memory, more than {MAX_DYNAMIC_SMEM}")
    out = gemm_output(out, x, M, N)
    fresh = not v5_stream_ready(pw, V5_BLOCK_K, cfg.rows // 16, True)
    stream = v5_stream(pw, V5_BLOCK_K, cfg.rows // 16, True)
    ws, cnt = _workspace(x.device, N, 64, N // 16 + 2)  # token-major [M, N] fp32 partial sums, grab counters
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    launch_by_value(get_kernel(kernel, cfg.expr), sms, cfg.threads,
                    (tensor_map_2d(x, box_rows, 64), stream, ws, cnt, M, N, K, cfg.s0, cfg.grab),
                    shared_mem=cfg.smem, enable_pdl=enable_pdl and not fresh)
    finalize_tm(ws, pw.global_scale, out)
    return out


def w4a16_gemm_v7(x: torch.Tensor, pw: PreparedWeight, config: V7Config | None = None,
                  out: torch.Tensor | None = None, enable_pdl: bool = False) -> torch.Tensor:
    """Fused NVFP4 W4A16 GEMM, weight as the wgmma B operand: x bf16 [M, K] (M <= 64) @ dequant(W)^T ->
    bf16 [M, N]. pw: a PreparedWeight (its grouped scale-pairs v5 stream is built on first use).
    enable_pdl: launch the GEMM with programmatic dependent launch (it reads x and writes the workspace
    only after griddepcontrol.wait; the weight stream, constant, before it: a call that builds the stream
    launches without PDL)."""
    check_gemm_input(x, pw, V7_MAX_M, "the v7 kernel")
    cfg = config or default_v7_config(x.shape[0])
    if not isinstance(cfg, V7Config):
        raise InputError(f"config: expected a V7Config, got {type(cfg).__name__}")
    return launch_weight_b_gemm("wo_gemm_v7", cfg, x, pw, out, enable_pdl, V7_MAX_M, cfg.tokp)
