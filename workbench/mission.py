"""The ten items of the mission, where each acts in the DeepSeek-R1 layer, and where the workbench tells it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MissionItem:
    number: int
    title: str
    layer_step: str  # where in the decoder layer it acts
    notebook: str  # notebooks/<notebook>.ipynb
    records: tuple[str, ...]  # data/results/<name>.json


MISSION = (
    MissionItem(1, "NVFP4 wo (o_proj) GEMM", "attention output projection [T,16384] x [16384,7168]",
                "01_nvfp4_wo_gemm", ("nvfp4", "wo_gemm")),
    MissionItem(2, "NVFP4 low-precision all-to-all for the MoE combine", "MoE combine all-to-all payload",
                "02_lowprec_combine", ()),
    MissionItem(3, "FP8 context attention (FP8 Q/K/V, FP8 KV cache)", "MLA context (prefill) attention",
                "03_fp8_attention", ()),
    MissionItem(4, "Tensor-parallel MTP LM head with distributed argmax", "MTP draft LM head [T,7168] x [7168,129280]",
                "04_lm_head_tp", ("lm_head_tp",)),
    MissionItem(5, "MLA context attention on separate Q/K/V", "MLA context attention inputs", "05_separate_qkv",
                ("separate_qkv",)),
    MissionItem(6, "Programmatic dependent launch across MoE routing kernels",
                "router -> top-k -> all-to-all prepare chain", "06_pdl_routing", ("pdl_routing",)),
    MissionItem(7, "One fused multi-field all-to-all (LL128 flags over NVLink)", "MoE dispatch all-to-all",
                "07_fused_alltoall", ()),
    MissionItem(8, "Shared-expert add fused into the top-k reduction (+ memset, swizzle fusions)",
                "MoE tail: expand rows, finalize, combine reduce", "08_moe_tail_fusions", ("moe_tail",)),
    MissionItem(9, "k_nope copy / k concat at bandwidth", "MLA context k assembly", "09_knope_copy", ("knope_copy",)),
    MissionItem(10, "The DeepSeek-R1 layer end to end: baseline vs optimized", "whole layer", "10_layer", ()),
)
