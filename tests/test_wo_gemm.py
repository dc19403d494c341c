"""wo GEMM: CPU checks of the emulations and accuracy study; GPU checks of the fused W4A16 kernel."""

import pytest
import torch
from wo_cases import all_codes_weight, check_fused, small_problem

from workbench.runtime import InputError
from workbench.techniques import nvfp4 as nv
from workbench.techniques import wo_gemm as wo


def test_accuracy_study_orders_formats():
    rows = wo.accuracy_study(M=8, N=128, K=512, outlier_scales=(1.0, 30.0))
    by = {(r["outlier_scale"], r["format"]): r for r in rows}
    for s in (1.0, 30.0):
        assert by[(s, "bf16")]["rel_l2"] < by[(s, "fp8_per_tensor")]["rel_l2"] < by[(s, "nvfp4_w4a16")]["rel_l2"]
        assert by[(s, "nvfp4_w4a16")]["rel_l2"] < by[(s, "nvfp4_w4a4")]["rel_l2"]
        assert by[(s, "nvfp4_w4a16")]["cosine"] > 0.99


def test_fp8_block_quant_error_small():
    t = torch.randn(256, 256)
    d = wo.fp8_block_quant_dequant(t, 128, 128)
    assert float((d - t).norm() / t.norm()) < 0.05
    with pytest.raises(InputError):
        wo.fp8_block_quant_dequant(torch.randn(100, 256), 64, 128)


def test_validate_uses_bf16_rounded_reference():
    ref = torch.randn(4, 64)
    assert wo.validate(ref.to(torch.bfloat16), ref)["passed"]
    assert not wo.validate((ref * 1.01).to(torch.bfloat16), ref)["passed"]


def test_bytes_model():
    assert wo.weight_bytes("bf16") == 234_881_024
    assert wo.weight_bytes("nvfp4") == 58_720_256 + 7_340_032


def test_default_configs_are_instantiated():
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("kernels/wo_gemm.cu").read_text()
    inst = set(re.findall(r"@instantiate (.+)", text))
    for c in wo.CONFIGS:
        assert c.expr in inst, c.expr
    for M in (1, 8, 16, 32, 64, 4096):
        assert wo.default_config(M) in wo.CONFIGS


def test_bad_weight_errors():
    x = torch.zeros(2, 32)
    q = nv.quantize_reference(torch.randn(16, 32), "tensor", layout="swizzled")
    with pytest.raises(InputError, match="layout"):
        wo.check_weight(q)
    with pytest.raises(InputError, match="w: expected an NVFP4Tensor"):
        wo.check_weight(x)


def test_prepare_weight_roundtrip_all_codes_and_scales():
    """prepare_weight + the kernel's decode (emulated bit for bit) give dequantize_reference exactly,
    for every code, every E4M3 scale (subnormal and zero included)."""
    N, K = 64, 1024
    # zero-scale blocks (their codes are zeroed by the layout), subnormal and the largest scales
    q = all_codes_weight(N, K, seed=0, edge_rows=True)
    pw = wo.prepare_weight(q)
    assert pw.data.shape == (N // 16, K // 512, 9, 32, 16)
    assert torch.equal(wo.decode_prepared(pw), nv.dequantize_reference(q))


def test_reencoded_scale_bf16_trick():
    """Every nonzero E4M3 scale survives the re-encoding, and bits (u << 4) + (180 << 7) are bf16 of
    s * 2^63 (what v4_scale computes with one PRMT and one IMAD)."""
    b = torch.arange(0, 0x7F, dtype=torch.uint8)
    s = nv.e4m3_decode(b)
    u = wo._reencode_scales(b)
    assert torch.equal(wo.decode_reencoded_scales(u), s)
    nz = s > 0
    assert bool((u[nz] >> 3 >= 1).all())  # u = 0 is reserved for the zero scale
    bits = (u[nz].to(torch.int32) << 4) + (180 << 7)
    assert torch.equal((bits << 16).view(torch.float32).double(), s[nz].double() * 2.0**63)


def test_prepare_weight_bad_input():
    q = nv.quantize_reference(torch.randn(16, 256), "tensor")
    with pytest.raises(InputError, match="512"):
        wo.prepare_weight(q)
    q = nv.quantize_reference(torch.randn(16, 512), "row")
    with pytest.raises(InputError, match="global_scale"):
        wo.prepare_weight(q)


def test_v4_configs_are_instantiated():
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("kernels/wo_gemm.cu").read_text()
    inst = set(re.findall(r"@instantiate (.+)", text))
    for c in wo.V4_KERNELS:
        assert c.expr in inst, c.expr
    for M in (1, 8, 16, 32, 64):
        assert wo.default_v4_config(M).expr in inst
        assert wo.v4_candidates(M)


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("cfg", wo.CONFIGS, ids=str)
@pytest.mark.parametrize("M", [1, 5, 8, 13, 32, 50, 64, 100, 130])
def test_gpu_w4a16_matches_fp32_of_dequantized(cfg, M):
    x, q, ref = small_problem(M)
    for splits in (1, 3):
        out = torch.full((M, q.shape[0]), float("nan"), dtype=torch.bfloat16, device="cuda")
        v = wo.validate(wo.w4a16_gemm(x, q, cfg, splits, out=out), ref)
        assert v["passed"], (cfg, M, splits, v)
    # twice more: the workspace and counters must have been left clean
    for _ in range(2):
        assert wo.validate(wo.w4a16_gemm(x, q, cfg, 3), ref)["passed"]


@pytest.mark.gpu
def test_gpu_w4a16_all_codes_and_scales():
    """Weights built to contain every code with scales across the E4M3 range (subnormal included)."""
    q = all_codes_weight(sf_low=1, device="cuda")
    x = wo.make_activations(8, q.shape[1], seed=4)
    ref = wo.reference(x, nv.dequantize(q, torch.float32))
    for cfg in wo.CONFIGS:
        assert wo.validate(wo.w4a16_gemm(x, q, cfg, 2), ref)["passed"], cfg


@pytest.mark.gpu
def test_gpu_w4a16_bad_input():
    x, q, _ = small_problem(4)
    with pytest.raises(InputError, match="dtype"):
        wo.w4a16_gemm(x.float(), q)
    with pytest.raises(InputError, match="contiguous"):
        wo.w4a16_gemm(torch.empty(1024, 4, dtype=torch.bfloat16, device="cuda").t(), q)
    with pytest.raises(InputError, match="K"):
        wo.w4a16_gemm(x[:, :512].contiguous(), q)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [k.with_ctas(c) for k in wo.V4_KERNELS for c in (1, 3)]
                         + [k.with_ctas(2, g) for k in wo.V4_KERNELS for g in (1, 3)], ids=str)
@pytest.mark.parametrize("M", [1, 5, 8, 13, 32, 50, 64, 100])
def test_gpu_w4a16_v4_matches_fp32_of_dequantized(cfg, M):
    x, q, ref = small_problem(M, N=512, K=2048)
    check_fused(wo.w4a16_gemm_v4, x, wo.prepare_weight(q), cfg, ref)


@pytest.mark.gpu
def test_gpu_w4a16_v4_all_codes_and_scales():
    q = all_codes_weight(sf_low=0, device="cuda")
    pw = wo.prepare_weight(q)
    assert torch.equal(wo.decode_prepared(pw), nv.dequantize_reference(q))
    x = wo.make_activations(8, q.shape[1], seed=4)
    ref = wo.reference(x, nv.dequantize(q, torch.float32))
    for k in wo.V4_KERNELS:
        assert wo.validate(wo.w4a16_gemm_v4(x, pw, k.with_ctas(2)), ref)["passed"], k
        assert wo.validate(wo.w4a16_gemm_v4(x, pw, k.with_ctas(2, 2)), ref)["passed"], k


@pytest.mark.gpu
def test_gpu_dispatcher_paths():
    x, q, ref = small_problem(200, N=512, K=1024)
    pw = wo.prepare_weight(q)
    assert wo.validate(wo.wo_nvfp4(x, pw, tuning={}), ref, tol=5e-3)["passed"]  # M > 32: cached bf16
    assert wo.dispatch_path(200, tuning={}) == "cached_bf16_cublas"
    assert wo.validate(wo.wo_nvfp4(x[:8].contiguous(), pw, tuning={}), ref[:8])["passed"]


def test_v6_configs_are_instantiated():
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("kernels/wo_gemm.cu").read_text()
    inst = set(re.findall(r"@instantiate (.+)", text))
    for c in wo.V6_KERNELS + wo.V6_DIAGNOSTICS:
        assert c.expr in inst, c.expr
        assert c.minb * (c.smem + 1024) <= 228 * 1024, c
        if c.nacc > 1:
            assert c.with_work(True).expr in inst, c
        assert 7168 % c.rows == 0


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", wo.V6_KERNELS + [k.with_work(True, s0, g) for k in wo.V6_KERNELS[1:4] for s0, g in
                                                 ((0, 0), (1, 1), (2, 3), (0, 2))], ids=str)
@pytest.mark.parametrize("M", [1, 2, 5, 8])
def test_gpu_w4a16_v6_matches_fp32_of_dequantized(cfg, M):
    x, q, ref = small_problem(M, N=1024, K=2048)
    check_fused(wo.w4a16_gemm_v6, x, wo.prepare_weight(q), cfg, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", wo.V6_KERNELS_NT + [k.with_work(True, 2, g) for k in wo.V6_KERNELS_NT for g in (1, 2)],
                         ids=str)
@pytest.mark.parametrize("M", [1, 9, 13, 16, 17, 30, 32])
def test_gpu_w4a16_v6_token_tiles_match_fp32_of_dequantized(cfg, M):
    """NT = 2 / 4 builds: every M up to 8 * NT (partial token tiles, rows >= M never read), and a clear
    error above."""
    x, q, ref = small_problem(M, N=1024, K=2048)
    pw = wo.prepare_weight(q)
    if M > cfg.tokens:
        with pytest.raises(InputError, match="M"):
            wo.w4a16_gemm_v6(x, pw, cfg)
        return
    check_fused(wo.w4a16_gemm_v6, x, pw, cfg, ref)


@pytest.mark.gpu
def test_gpu_w4a16_v6_all_codes_and_scales():
    q = all_codes_weight(sf_low=0, device="cuda")
    pw = wo.prepare_weight(q)
    x = wo.make_activations(8, q.shape[1], seed=4)
    ref = wo.reference(x, nv.dequantize(q, torch.float32))
    for k in wo.V6_KERNELS + [k.with_work(True, 1, 1) for k in wo.V6_KERNELS[1:]] + wo.V6_KERNELS_NT:
        if q.shape[0] % k.rows == 0:
            assert wo.validate(wo.w4a16_gemm_v6(x, pw, k), ref)["passed"], k


@pytest.mark.gpu
@pytest.mark.parametrize("M,ldw,N", [(1, 8, 7168), (5, 8, 96), (32, 32, 7168), (50, 64, 7168), (64, 64, 112)])
def test_gpu_finalize_converts_and_zeroes_the_workspace(M, ldw, N):
    """wo_finalize: out[tok, n] = bf16(ws[n, tok] * 2^63 / g) for tok < M, and every ws entry zero after."""
    g = torch.tensor(1.7e3, device="cuda")
    ws = torch.randn(N * ldw, device="cuda") * 2.0**-60
    want = (ws.view(N, ldw)[:, :M].t() * (2.0**63 / g)).to(torch.bfloat16)
    out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
    wo.finalize(ws, g, out, ldw)
    torch.cuda.synchronize()
    # alpha is formed as (1/g) * 2^63 in fp32, one rounding away from 2^63/g: compare to 1 bf16 ulp
    torch.testing.assert_close(out.float(), want.float(), rtol=2**-7, atol=0)
    assert int(torch.count_nonzero(ws)) == 0
    with pytest.raises(InputError, match="ldw"):
        wo.finalize(ws, g, out, 6)


# --- the per-GPU tuning table (data/tuned/wo_gemm.json) and the dispatcher's default -----------------------

def test_tuning_table_matches_its_records():
    """Each device's entry names a committed wo_gemm record of that device, holds that run's fused_tuning, and
    every config in it is still a candidate (wo_nvfp4 resolves them on first use)."""
    import json

    table = json.loads(wo.TUNING_PATH.read_text())["devices"]
    assert table, "no device in the tuning table"
    for name, entry in table.items():
        rec = json.loads((wo.REPO_ROOT / entry["record"]).read_text())
        assert rec["device"]["name"] == name, entry["record"]
        assert (rec["git_commit"], rec["fused_tuning"]) == (entry["git_commit"], entry["fused"]), name
        tuned = wo.table_tuning(name)
        assert sorted(tuned) == sorted(int(m) for m in entry["fused"])
        assert all(str(c) == entry["fused"][str(m)] for m, c in tuned.items())
    assert wo.table_tuning("no such GPU") == {}


def test_the_committed_record_device_has_a_table_entry():
    import json

    rec = json.loads((wo.REPO_ROOT / "data/results/wo_gemm.json").read_text())
    assert wo.table_tuning(rec["device"]["name"]) == {
        int(m): wo.resolve_fused_config(int(m), s) for m, s in rec["fused_tuning"].items()}


def test_resolve_unknown_config_names_it():
    with pytest.raises(InputError, match="'v5_nothing' at M = 8: not among"):
        wo.resolve_fused_config(8, "v5_nothing")
    with pytest.raises(InputError, match="expected a wo_gemm record"):
        wo.tuning_entry({"technique": "copy"}, "data/results/copy.json")


def test_fused_config_between_measured_m_takes_the_next_larger():
    a, b, c = (wo.resolve_fused_config(m, s) for m, s in (
        (8, str(wo.fused_candidates(8)[0])), (32, str(wo.fused_candidates(32)[0])), (64, str(wo.fused_candidates(64)[0]))))
    tuning = {8: a, 32: b, 64: c}
    assert wo._fused_config(1, tuning) is a and wo._fused_config(8, tuning) is a
    assert wo._fused_config(9, tuning) is b and wo._fused_config(16, tuning) is b
    assert wo._fused_config(33, tuning) is c and wo._fused_config(64, tuning) is c
    assert wo._fused_config(65, tuning) is None  # above every measured M: cached-bf16 cuBLAS
    assert wo._fused_config(4, {}) == wo.default_v4_config(4)  # no tuning: the untuned defaults


def test_active_tuning_order(monkeypatch):
    mine = {8: wo.default_v4_config(8)}
    assert wo._active_tuning(mine, (wo.N_OUT, wo.K_IN)) is mine
    assert wo._active_tuning(None, (512, 1024)) == {}  # the tables hold the wo shape's configs only
    monkeypatch.setattr(wo, "FUSED_TUNING", {1: wo.default_v4_config(1)})
    assert wo._active_tuning(None, (wo.N_OUT, wo.K_IN)) is wo.FUSED_TUNING  # the benchmark's run wins


def test_device_tuning_by_model_name(monkeypatch):
    """device_tuning picks the table entry by torch.cuda.get_device_name, once per model; a model without an entry
    warns once and gets the untuned defaults (checked on CPU with the name faked)."""
    import json
    import warnings

    monkeypatch.setattr(wo, "_DEVICE_TUNING", {})
    monkeypatch.setattr(wo, "FUSED_TUNING", {})
    monkeypatch.setattr(wo.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(wo.torch.cuda, "get_device_name", lambda device=None: "Imaginary GPU")
    with pytest.warns(UserWarning, match="no tuned configs for 'Imaginary GPU'"):
        assert wo.device_tuning() == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wo.dispatch_path(8) == "fused_v4" and wo.dispatch_path(200) == "cached_bf16_cublas"  # defaults
    name = next(iter(json.loads(wo.TUNING_PATH.read_text())["devices"]))
    monkeypatch.setattr(wo.torch.cuda, "get_device_name", lambda device=None: name)
    assert wo.device_tuning() == wo.table_tuning(name) and wo.dispatch_path(32) == "fused_v5"
    assert wo.dispatch_path(32, shape=(512, 1024)) == "fused_v5"  # other shapes: the untuned v5 default
    assert wo._fused_config(32, wo._active_tuning(None, (512, 1024))) == wo._fused_config(32, {})


def test_dispatch_path_without_a_gpu(monkeypatch):
    """On a host without CUDA, dispatch_path answers for a GPU model named by `device`, and without one it says
    what it needs instead of torch's "not compiled with CUDA"."""
    import json

    monkeypatch.setattr(wo, "_DEVICE_TUNING", {})
    monkeypatch.setattr(wo, "FUSED_TUNING", {})
    monkeypatch.setattr(wo.torch.cuda, "is_available", lambda: False)
    models = sorted(json.loads(wo.TUNING_PATH.read_text())["devices"])
    with pytest.raises(InputError, match=r"device: expected a CUDA device or a GPU model name .*is_available\(\) is False"):
        wo.dispatch_path(8)
    for name in models:
        table = wo.table_tuning(name)
        assert wo.device_tuning(name) == table
        for m in (1, 8, 32, 64, 4096):
            want = wo._fused_config(m, table)
            assert wo.dispatch_path(m, device=name) == (
                "cached_bf16_cublas" if want is None else "fused_" + str(want).split("_")[0])
    assert wo.dispatch_path(8, tuning={}) == "fused_v4"  # an explicit tuning needs no device


def test_fused_families_are_the_candidates():
    """The benchmark's families and fused_candidates (which names the records' configs) are one list."""
    for m in (1, 8, 32, 64, 128, 256, 1024):
        fams = wo.fused_families(m)
        assert [c for _, cands, _ in fams for c in cands] == wo.fused_candidates(m)
        names = [f for f, _, _ in fams]
        assert names == [f for f in ("v4", "v6", "v5", "v7", "v8", "v9p") if f in names]  # the benchmark's order
        assert ("v6" in names) == (m <= 32) and ("v5" in names) == (m <= 64) and ("v7" in names) == (32 <= m <= 64)
        assert ("v9p" in names) == (m <= 8)
        untuned = wo.fused_families(m, tune=False)
        assert all(len(cands) == 1 for _, cands, _ in untuned) and "v7" not in [f for f, _, _ in untuned]
        assert "v9p" not in [f for f, _, _ in untuned]
    assert wo.fused_families(4096) == []


def test_v9p_configs_resolve_and_dispatch():
    """A v9p config named in a record resolves at M <= 8 and dispatches as 'fused_v9p'."""
    from workbench.techniques import wo_gemm_v9 as v9

    cfg = v9.V9P_TUNED[0]
    assert wo.resolve_fused_config(1, str(cfg)) == cfg
    assert wo.dispatch_path(1, tuning={1: cfg, 8: wo.default_v4_config(8)}) == "fused_v9p"
    assert wo.dispatch_path(2, tuning={1: cfg, 8: wo.default_v4_config(8)}) == "fused_v4"
    with pytest.raises(InputError, match="not among"):
        wo.resolve_fused_config(32, str(cfg))


@pytest.mark.gpu
def test_gpu_default_dispatch_uses_the_device_table():
    """At the wo shape with no tuning given, wo_nvfp4 runs this GPU's tuned fused kernels (also at M between the
    measured ones) and matches the fp32 GEMM of the dequantized operands within 1e-3."""
    table = wo.table_tuning(torch.cuda.get_device_name())
    if not table:
        pytest.skip("this GPU model has no entry in data/tuned/wo_gemm.json")
    saved = dict(wo.FUSED_TUNING)
    wo.FUSED_TUNING.clear()
    try:
        x, q, ref = small_problem(64, N=wo.N_OUT, K=wo.K_IN, seed=11)
        pw = wo.prepare_weight(q)
        for M in (1, 5, 8, 16, 32, 48, 64):
            assert wo.dispatch_path(M) == "fused_" + str(wo._fused_config(M, table)).split("_")[0]
            assert wo._fused_config(M, wo._active_tuning(None, pw.shape)) == wo._fused_config(M, table)
            assert wo.validate(wo.wo_nvfp4(x[:M].contiguous(), pw), ref[:M])["passed"], M
    finally:
        wo.FUSED_TUNING.update(saved)
