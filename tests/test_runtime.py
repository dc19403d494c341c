"""Runtime on CPU: argument checks, kernel source hashing, NVRTC errors, ptxas report parsing, arg packing."""

import numpy as np
import pytest
import torch

from workbench.runtime import InputError, check_tensor
from workbench.runtime import kernels as K
from workbench.runtime.launch import pack_arg

nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="needs cuda-bindings (the compile extra)")


def test_check_tensor_dtype_names_argument():
    x = torch.zeros(4, 8, dtype=torch.float32)
    with pytest.raises(InputError, match=r"hidden: expected dtype torch.bfloat16, got torch.float32"):
        check_tensor("hidden", x, dtype=torch.bfloat16)


def test_check_tensor_device():
    x = torch.ones(4, dtype=torch.bfloat16)
    with pytest.raises(InputError, match=r"x: expected a cuda tensor, got one on cpu"):
        check_tensor("x", x, device="cuda")


def test_check_tensor_shape_and_contiguity():
    x = torch.ones(4, 8)
    with pytest.raises(InputError, match=r"w: expected shape \[4, 16\], got \[4, 8\]"):
        check_tensor("w", x, shape=(4, 16))
    check_tensor("w", x, shape=(None, 8))
    with pytest.raises(InputError, match="expected a contiguous tensor"):
        check_tensor("w", x.t(), contiguous=True)
    with pytest.raises(InputError, match="expected unit stride in the last dimension"):
        check_tensor("w", x.t(), last_dim_contiguous=True)


def test_check_tensor_alignment():
    x = torch.ones(64, dtype=torch.uint8)
    with pytest.raises(InputError, match="aligned to 16 bytes"):
        check_tensor("src", x[1:], align_bytes=16)


def test_check_tensor_not_a_tensor():
    with pytest.raises(InputError, match="expected a torch.Tensor, got list"):
        check_tensor("x", [1, 2])


def test_copy_op_rejects_cpu_tensor():
    from workbench.techniques import copy as wb_copy

    src = torch.ones(64, dtype=torch.uint8)
    with pytest.raises(InputError, match="src: expected a cuda tensor"):
        wb_copy.copy(src, src.clone())


def test_copy_op_rejects_wrong_dtype():
    from workbench.techniques import copy as wb_copy

    src = torch.ones(16, dtype=torch.float32)
    with pytest.raises(InputError, match="src: expected dtype torch.uint8, got torch.float32"):
        wb_copy.copy(src, src.clone())


def test_source_files_follow_includes():
    files = {p.name for p in K.source_files("copy")}
    assert files == {"copy.cu", "wb_common.cuh"}


def test_hash_changes_with_included_header(tmp_path):
    hdr = tmp_path / "h.cuh"
    cu = tmp_path / "k.cu"
    hdr.write_text("#define V 1\n")
    cu.write_text('#include "h.cuh"\nextern "C" __global__ void k(int* x) { x[0] = V; }\n')
    h1 = K.kernel_hash(str(cu))
    hdr.write_text("#define V 2\n")
    assert K.kernel_hash(str(cu)) != h1


def test_syntax_error_gives_compiler_log(tmp_path):
    cu = tmp_path / "broken.cu"
    cu.write_text('extern "C" __global__ void k(int* x) { x[0] = 1 }\n')  # missing ';'
    with pytest.raises(K.KernelCompileError, match=r"broken.cu: compilation for sm_90a failed[\s\S]*expected a \";\""):
        K.compile_kernel(str(cu), use_cache=False)


def test_missing_header_is_named(tmp_path):
    cu = tmp_path / "k.cu"
    cu.write_text('#include "nope.cuh"\n')
    with pytest.raises(K.KernelCompileError, match='cannot find included header "nope.cuh"'):
        K.compile_kernel(str(cu), use_cache=False)


def test_unknown_kernel_file():
    with pytest.raises(FileNotFoundError, match="known kernels"):
        K.kernel_path("no_such_kernel")


def test_template_instantiation_and_resources(tmp_path):
    cu = tmp_path / "t.cu"
    cu.write_text("// @instantiate scale<4>\n"
                  "template <int N> __global__ void scale(float* x) { __shared__ float s[N * 32];"
                  " s[threadIdx.x] = x[threadIdx.x]; __syncthreads(); x[threadIdx.x] = s[N] * N; }\n")
    c = K.compile_kernel(str(cu), use_cache=False)
    assert c.lowered["scale<4>"].startswith("_Z")
    r = c.resources_for("scale<4>")
    assert r.smem_bytes == 4 * 32 * 4 and r.registers > 0 and not r.spills


def test_parse_ptxas_log():
    log = """ptxas info    : Compiling entry function 'foo' for 'sm_90a'
ptxas info    : Function properties for foo
ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem"""
    r = K.parse_ptxas_log(log)["foo"]
    assert (r.registers, r.spill_stores, r.spill_loads, r.stack_frame, r.smem_bytes, r.barriers) == (255, 8, 4, 16, 2048, 1)
    assert r.spills


def test_pack_arg_types():
    assert pack_arg(3).dtype == np.int32
    assert pack_arg(1.5).dtype == np.float32
    assert pack_arg(np.int64(5)).dtype == np.int64
    with pytest.raises(OverflowError, match="does not fit int32"):
        pack_arg(2**40)
    with pytest.raises(TypeError, match="expected a CUDA tensor"):
        pack_arg(torch.ones(2))
    with pytest.raises(TypeError, match="unsupported type str"):
        pack_arg("x")
