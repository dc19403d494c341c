"""wo GEMM step 8: v7's product, warp-specialized (kernels/wo_gemm_v8.cu).

v7 (wo_gemm_v7.py) made the weight the wgmma B operand (tokens padded to 64 are M, weight rows N: one
instruction per 128 x 16 weights instead of v5's 64 x 16), but each consumer warpgroup decoded its rows,
met at two barriers per 64-k chunk and then multiplied: decode, barriers and tensor work took turns.
v8 gives them different warps that meet only at mbarriers: a decoder warpgroup fills two decoded slots
(256 rows x 64 k, stmatrix into the 128-byte-swizzled B layout), two MMA warpgroups (setmaxnreg: 168
registers) multiply each slot with x as the shared-memory A operand (TMA box of 64 token rows), and a
producer warp streams units of the grouped scale-pairs v5 stream. Reduce-only into the token-major
workspace; wo_finalize_tm (kernels/wo_gemm_v7.cu) converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime import InputError
from .wo_gemm import PreparedWeight
from .wo_gemm_v5 import V5_BLOCK_K, block_bytes
from .wo_gemm_v7 import launch_weight_b_gemm

V8_MAX_M = 64


@dataclass(frozen=True)
class V8Config:
    """Template parameters of w4a16_v8: NB weight rows per MMA warpgroup (wgmma N), NMMA MMA warpgroups,
    NDEC decoder warpgroups, STAGES units (NB * NMMA rows x 256 k) in flight; s0 / grab: the work split
    (grab > 0: the first s0 units of each CTA's share static, then grabs of `grab` units)."""

    nb: int = 128
    nmma: int = 2
    ndec: int = 1
    stages: int = 2
    s0: int = 0
    grab: int = 0

    tokp = 64  # the x box: 64 token rows (wgmma M), zero-filled past M
    red = True

    @property
    def expr(self) -> str:
        return f"w4a16_v8<{self.nb}, {self.nmma}, {self.ndec}, {self.stages}>"

    @property
    def rows(self) -> int:
        return self.nb * self.nmma

    @property
    def threads(self) -> int:
        return (self.nmma + self.ndec + 1) * 128

    @property
    def units(self) -> int:  # for the wo shape
        return (7168 // self.rows) * (16384 // V5_BLOCK_K)

    @property
    def smem(self) -> int:
        w_stage = (self.rows // 16) * block_bytes(V5_BLOCK_K)
        x_stage = (V5_BLOCK_K // 64) * self.tokp * 128
        return self.stages * (w_stage + x_stage) + 2 * self.rows * 128 + 8 * (2 * self.stages + 4) + 1024

    def with_work(self, s0: int = 0, grab: int = 0) -> V8Config:
        return V8Config(self.nb, self.nmma, self.ndec, self.stages, s0, grab)

    def __str__(self) -> str:
        wk = f"_s0{self.s0}_g{self.grab}" if self.grab else ""
        return f"v8_nb{self.nb}_mma{self.nmma}_dec{self.ndec}_s{self.stages}{wk}"


# Instantiated in kernels/wo_gemm_v8.cu.
V8_KERNELS = [V8Config(128, 2, 1, 2)]


def v8_candidates(M: int, sms: int = 132) -> list[V8Config]:
    """Every build (M <= 64), static and with grabs of one unit after 3/4 of the share."""
    if not 1 <= M <= V8_MAX_M:
        raise InputError(f"x.shape[0] (M): the v8 kernel serves 1 <= M <= {V8_MAX_M}, got {M}")
    return [w for k in V8_KERNELS for w in (k, k.with_work(max(1, int(0.75 * k.units / sms)), 1))]


def w4a16_gemm_v8(x: torch.Tensor, pw: PreparedWeight, config: V8Config | None = None,
                  out: torch.Tensor | None = None, enable_pdl: bool = False) -> torch.Tensor:
    """Fused NVFP4 W4A16 GEMM, warp-specialized, the weight as the wgmma B operand: x bf16 [M, K]
    (M <= 64) @ dequant(W)^T -> bf16 [M, N]. enable_pdl: programmatic dependent launch (x and the
    workspace only after griddepcontrol.wait; a call that builds the weight stream launches without it)."""
    cfg = config or V8_KERNELS[0]
    if not isinstance(cfg, V8Config):
        raise InputError(f"config: expected a V8Config, got {type(cfg).__name__}")
    return launch_weight_b_gemm("wo_gemm_v8", cfg, x, pw, out, enable_pdl, V8_MAX_M, 64)
