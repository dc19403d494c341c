"""DeepSeek-R1 dimensions: the derived shapes every technique relies on."""

import pytest

from workbench.model import R1, SMALL, dims


def test_r1_derived_shapes():
    assert R1.qk_head_dim == 192
    assert R1.o_proj_in == 16384
    assert R1.kv_b_out == 32768
    assert R1.experts_per_group == 32
    assert R1.weight_shapes()["o_proj"] == (7168, 16384)
    assert R1.weight_shapes()["kv_a_proj_with_mqa"] == (2112, 7168)
    assert R1.softmax_scale == pytest.approx(0.135234, abs=1e-6)


def test_small_keeps_structure():
    assert SMALL.num_experts % SMALL.num_groups == 0
    assert SMALL.top_k == R1.top_k and SMALL.topk_groups == R1.topk_groups
    assert SMALL.hidden % SMALL.nvfp4_block == 0


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset: expected one of"):
        dims("r2")
