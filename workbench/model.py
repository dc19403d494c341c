"""DeepSeek-R1 dimensions: the one source of shapes for every technique, notebook and test.

Values follow the published DeepSeek-R1 config (hidden 7168, 61 layers, MLA with 128 heads, 256 routed
experts with top-8). `SMALL` keeps every structural relation (head split, groups of experts, top-k) at
sizes a CPU can run in seconds; notebooks use it when `SMOKE=True` or no GPU is present.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelDims:
    """Dimensions of a DeepSeek-R1-style decoder layer (attention-DP rank view: all heads local)."""

    name: str = "DeepSeek-R1"
    hidden: int = 7168
    num_layers: int = 61
    num_dense_layers: int = 3
    num_heads: int = 128
    q_lora_rank: int = 1536
    kv_lora_rank: int = 512
    qk_nope_dim: int = 128
    qk_rope_dim: int = 64
    v_head_dim: int = 128
    vocab: int = 129280
    num_experts: int = 256
    top_k: int = 8
    num_groups: int = 8
    topk_groups: int = 4
    moe_intermediate: int = 2048
    num_shared_experts: int = 1
    routed_scaling: float = 2.5
    nvfp4_block: int = 16
    yarn_factor: float = 40.0

    # ---- derived shapes -------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_dim + self.qk_rope_dim

    @property
    def o_proj_in(self) -> int:
        """K of the wo GEMM: heads x v_head_dim (16384 for R1)."""
        return self.num_heads * self.v_head_dim

    @property
    def kv_b_out(self) -> int:
        """Width of the kv_b_proj output: heads x (k_nope + v) (32768 for R1)."""
        return self.num_heads * (self.qk_nope_dim + self.v_head_dim)

    @property
    def experts_per_group(self) -> int:
        return self.num_experts // self.num_groups

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    @property
    def softmax_scale(self) -> float:
        """MLA context softmax scale with the YaRN mscale: mscale^2 / sqrt(192) = 0.135234 for R1."""
        mscale = 0.1 * math.log(self.yarn_factor) + 1.0
        return mscale * mscale / math.sqrt(self.qk_head_dim)

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """[out, in] of the layer's linear weights, in the order data flows through the layer."""
        h = self.hidden
        return {
            "kv_a_proj_with_mqa": (self.q_lora_rank + self.kv_lora_rank + self.qk_rope_dim, h),
            "q_b_proj": (self.num_heads * self.qk_head_dim, self.q_lora_rank),
            "kv_b_proj": (self.kv_b_out, self.kv_lora_rank),
            "o_proj": (h, self.o_proj_in),
            "router": (self.num_experts, h),
            "expert_fc1": (2 * self.moe_intermediate, h),
            "expert_fc2": (h, self.moe_intermediate),
            "shared_fc1": (2 * self.moe_intermediate * self.num_shared_experts, h),
            "shared_fc2": (h, self.moe_intermediate * self.num_shared_experts),
            "lm_head": (self.vocab, h),
        }

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(qk_head_dim=self.qk_head_dim, o_proj_in=self.o_proj_in, kv_b_out=self.kv_b_out,
                 softmax_scale=self.softmax_scale)
        return d


R1 = ModelDims()

# Same structure, small sizes: 8 groups of 4 experts, top-8 kept, heads x dims scaled down.
SMALL = replace(
    R1,
    name="R1-small",
    hidden=256,
    num_layers=4,
    num_dense_layers=1,
    num_heads=4,
    q_lora_rank=64,
    kv_lora_rank=32,
    qk_nope_dim=32,
    qk_rope_dim=16,
    v_head_dim=32,
    vocab=1024,
    num_experts=32,
    moe_intermediate=64,
)

PRESETS = {"r1": R1, "small": SMALL}


def dims(preset: str = "r1") -> ModelDims:
    """Return the named preset ('r1' or 'small')."""
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}") from None
