"""Compile gate: every kernels/*.cu compiles for sm_90a through NVRTC (no GPU) without register spills."""

import pytest

from workbench.runtime import kernels as K
from workbench.runtime.ptxas_notices import serialized_wgmma

pytest.importorskip("cuda.bindings.nvrtc", reason="needs cuda-bindings (the compile extra)")

# Kernels allowed to spill, with the reason. Empty: every kernel must fit its registers.
ALLOWED_SPILLS: dict[str, str] = {}


@pytest.mark.parametrize("name", K.list_kernels())
def test_kernel_compiles_for_sm90a_without_spills(name):
    c = K.compile_kernel(name, arch="sm_90a")
    assert c.resources, f"{name}: no entry functions in the ptxas report"
    for expr in K.name_expressions(name):
        assert expr in c.lowered, f"{name}: template {expr} was not instantiated"
    spilling = {r.name: (r.spill_stores, r.spill_loads) for r in c.resources.values() if r.spills}
    if name in ALLOWED_SPILLS:
        return
    assert not spilling, f"{name}: register spills (stores, loads) in {spilling}"


def test_serialized_wgmma_reads_every_serialization_notice():
    # ptxas names the lowered entry point in quotes; every "are serialized" notice counts, other notices do not
    log = "\n".join([
        "ptxas info    : (C7512) Potential Performance Loss: wgmma.mma_async instructions are serialized due to "
        "insufficient register resources for the wgmma pipeline in the function '_Z1ai'",
        "ptxas info    : (C7514) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non "
        "wgmma instructions reading accumulator registers of a wgmma between start and end of the pipeline stage in "
        "the function '_Z1bi'",
        "ptxas info    : (C7517) warpgroup.wait is injected in around line 10 by compiler to allow use of registers "
        "defined by GMMA in function '_Z1ci'",
    ])
    ck = K.CompiledKernel(name="k", arch="sm_90a", cubin=b"", lowered={"a<1>": "_Z1ai", "c<1>": "_Z1ci"}, log=log,
                        source_hash="")
    assert serialized_wgmma(ck) == {"a<1>", "_Z1bi"}
