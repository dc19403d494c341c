"""Registry of the techniques and their benchmarks (attention-gym style: the list here *is* the registry).

Each entry names a result record (`data/results/<name>.json`), the module that implements it, the
function that benchmarks it on a GPU, the files its numbers depend on, and the notebook that tells it.
A technique module may own several records (nvfp4 owns `nvfp4` and `wo_gemm`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str  # record name: data/results/<name>.json
    module: str  # module under workbench.techniques
    func: str  # benchmark function: (smoke: bool, progress: bool) -> list[Case]
    title: str
    notebook: str | None = None  # notebooks/<notebook>.ipynb
    mission: int | None = None  # item of the mission list (README)

    def load(self):
        return importlib.import_module(f"workbench.techniques.{self.module}")

    @property
    def sources(self) -> tuple[str, ...]:
        """Files the results depend on: the module's SOURCES (paths and kernel names)."""
        mod = self.load()
        srcs = mod.SOURCES
        return tuple(srcs[self.name] if isinstance(srcs, dict) else srcs)

    def run(self, smoke: bool = False, progress: bool = True):
        return getattr(self.load(), self.func)(smoke=smoke, progress=progress)


REGISTRY: dict[str, Benchmark] = {}


def register(b: Benchmark) -> Benchmark:
    if b.name in REGISTRY:
        raise ValueError(f"benchmark {b.name!r} registered twice")
    REGISTRY[b.name] = b
    return b


register(Benchmark("copy", "copy", "benchmark", "Vectorized device copy (pipeline check, bandwidth yardstick)",
                   notebook="00_overview", mission=None))


def get(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"technique: no benchmark {name!r}; known: {sorted(REGISTRY)}") from None


def names() -> list[str]:
    return list(REGISTRY)


register(Benchmark("pdl_routing", "pdl_routing", "benchmark",
                   "MoE routing + all-to-all prepare chain with programmatic dependent launch",
                   notebook="06_pdl_routing", mission=6))
register(Benchmark("knope_copy", "knope_copy", "benchmark",
                   "MLA context k assembly (k_nope copy + k_pe broadcast) at copy bandwidth",
                   notebook="09_knope_copy", mission=9))
register(Benchmark("separate_qkv", "separate_qkv", "benchmark",
                   "MLA context attention on separate Q/K/V (no k assembly), Triton wgmma kernel",
                   notebook="05_separate_qkv", mission=5))
register(Benchmark("lm_head_tp", "lm_head_tp", "benchmark",
                   "MTP LM head tensor-parallel with a distributed argmax over NVLink peer buffers (spawns one rank "
                   "per GPU)", notebook="04_lm_head_tp", mission=4))
register(Benchmark("nvfp4", "nvfp4", "benchmark", "NVFP4 quantize/dequantize kernels (exact, at copy bandwidth)",
                   notebook="01_nvfp4_wo_gemm", mission=1))
register(Benchmark("wo_gemm", "wo_gemm", "benchmark", "wo GEMM with NVFP4 weights: fused W4A16 vs cuBLAS bf16/fp8",
                   notebook="01_nvfp4_wo_gemm", mission=1))
register(Benchmark("moe_tail", "moe_tail", "benchmark",
                   "MoE tail fusions: top-k reduce + shared-expert add (bf16 and NVFP4 rows), expand-input-rows "
                   "with the scale swizzle and the output memset folded in", notebook="08_moe_tail_fusions", mission=8))
