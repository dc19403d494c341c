"""Every notebook executes headlessly on CPU with SMOKE parameters; the report works offline."""

import json
from pathlib import Path

import pytest

from workbench.report import execute_notebook, list_notebooks, write_index

NOTEBOOKS = list_notebooks()
pytestmark = pytest.mark.notebooks


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(nb):
    data = json.loads(nb.read_text())
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{nb.name} has outputs"
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in data["cells"]), \
        f"{nb.name}: no cell tagged 'parameters'"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_cpu(nb, tmp_path):
    pytest.importorskip("papermill")
    run = execute_notebook(nb, tmp_path, {"DEVICE": "cpu", "SMOKE": True, "INTERACTIVE": False}, timeout=600)
    assert run.ok, f"{nb.name} failed at code cell {run.failed_cell}: {run.error}"
    html = Path(run.html).read_text()
    # Figures must render offline: plotly.js inlined, no CDN.
    if "plotly" in nb.read_text():
        assert "Plotly.newPlot" in html, f"{nb.name}: no plotly figure in the HTML export"
        assert "cdn.plot.ly" not in html
    index = write_index([run], tmp_path)
    assert nb.stem in index.read_text()


def test_failing_notebook_is_named_with_its_cell(tmp_path):
    pytest.importorskip("papermill")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("DEVICE = 'auto'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError('planted failure')")]
    src = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, str(src))
    run = execute_notebook(src, tmp_path / "out", {"DEVICE": "cpu"}, timeout=120)
    assert not run.ok
    assert run.failed_cell == 4  # the injected-parameters cell counts too
    assert "planted failure" in run.error


def test_committed_diagnostics_load():
    """The diagnostic measurements notebook 01 shows (data/diagnostics) load, name their card, have rows."""
    from workbench import nbutil

    rate, trace = nbutil.diagnostic("wgmma_rate_h100"), nbutil.diagnostic("wo_trace_diag_h100")
    assert rate["device"]["name"].startswith("NVIDIA H100") and len(rate["rows"]) > 0
    assert trace["device"]["name"].startswith("NVIDIA H100") and {"32", "64"} <= set(trace["cases"])
    tl = nbutil.diagnostic("wo_timeline_h100")
    assert tl["device"]["name"].startswith("NVIDIA H100")
    from workbench.viz import nvfp4 as vnv

    rows = vnv.timeline_rows(tl, {32: 22.46, 64: 22.96})
    assert rows and all(r["busy / unit"] > 0 and r["period"] >= r["busy / unit"] for r in rows)
    # the weight bound per unit: 22.46 us over 1792 / 132 units of the M = 32 build at its clock (~2.9k cycles)
    r32 = next(r for r in rows if r["build"] == "v5_n32_mt1_wg4_kc256_s4_gs2_a2_b2_red_grp_lean7")
    assert r32["bound us"] == 22.46 and abs(r32["bound / unit"] - 22.46e3 * r32["GHz"] * 132 / 1792) <= 1
    # the recorded M = 32 build's twin and the sampled CTAs are there; the figure has its three traces
    assert any(r["build"] == "v5_n32_mt1_wg4_kc256_s4_gs2_a2_b2_red_grp_lean7" and r["twin us / call"] for r in rows)
    assert len(vnv.fig_cta_timeline(tl).data) == 3
    assert nbutil.diagnostic("no_such_measurement") is None


def test_finalize_tail_from_a_trace():
    """nbutil.finalize_tail_us: wo_finalize's end after the GEMM's = its (negative, PDL) gap plus its duration."""
    from workbench import nbutil

    trace = {"kernels": {"void w4a16_v5": {"median_us": 27.9}, "wo_finalize": {"median_us": 28.0}},
             "gap_before_us": {"wo_finalize": -26.2, "void w4a16_v5": 0.3}}
    assert abs(nbutil.finalize_tail_us(trace) - 1.8) < 1e-9
    assert nbutil.finalize_tail_us({"kernels": {"nvjet": {"median_us": 84.0}}, "gap_before_us": {}}) is None
    assert nbutil.finalize_tail_us("RuntimeError(...)") is None  # a variant whose trace failed
    flush = nbutil.diagnostic("wo_trace_flush_h100")  # the committed flush trace: the recorded M = 32 build's tail
    rec = flush["cases"]["32"]["variants"]["v5_n32_mt1_wg4_kc256_s4_gs2_a2_b2_red_grp_lean2695"]
    assert 0 < nbutil.finalize_tail_us(rec["trace"]) < rec["replay_us"]


def test_wo_records_of_two_cards():
    """nbutil.wo_records: the main record first, then one committed run per other GPU model; wo_bounds picks a card's
    bounds; vnv.wo_card_rows puts each card's ratios from its own run beside its bound."""
    import json

    from workbench import nbutil
    from workbench.runtime.kernels import REPO_ROOT
    from workbench.viz import nvfp4 as vnv

    main = json.loads((REPO_ROOT / "data/results/wo_gemm.json").read_text())
    recs = nbutil.wo_records(main)
    names = [r["device"]["name"] for r in recs]
    assert recs[0] is main and len(set(names)) == len(names) == 2
    assert nbutil.wo_records(None)  # without a main record: the committed runs of the other cards
    for rec in recs:
        bounds = nbutil.wo_bounds(recs, rec["device"]["name"])
        assert bounds == {c["params"]["M"]: c["bound_us"] for c in rec["cases"]}
    assert nbutil.wo_bounds(recs, "no such GPU") == {}
    rows = vnv.wo_card_rows(recs)
    assert sorted((r["card"], r["M"]) for r in rows) == sorted((n, m) for n in names for m in (1, 8, 32, 64))
    for r in rows:
        case = next(c for c in next(x for x in recs if x["device"]["name"] == r["card"])["cases"]
                    if c["params"]["M"] == r["M"])
        v = case["variants"]
        assert r["vs bf16"] == round(v["cublas_bf16"]["median_us"] / v["optimized"]["median_us"], 2)
        assert r["bound us"] == round(case["bound_us"], 2) and r["% of bound"] <= 100


def test_wo_target_rows():
    """vnv.wo_target_rows: each speed target's ratio from the record's own baselines, met when the unrounded ratio
    reaches it (ordinary launch and PDL apart), the 1.15x target at every M, and the rel-L2 target over all cases."""
    from workbench.viz import nvfp4 as vnv

    def case(M, opt, bf16, fp8, pdl=None, rel=5e-4, passed=True):
        v = {"optimized": {"median_us": opt}, "cublas_bf16": {"median_us": bf16}, "torch_fp8": {"median_us": fp8}}
        if pdl:
            v["optimized_pdl"] = {"median_us": pdl}
        return {"params": {"M": M, "N": 7168, "K": 16384}, "variants": v,
                "validation": {"passed": passed, "optimized.rel_l2": rel}}

    rec = {"device": {"name": "GPU X"}, "git_commit": "abc1234",
           "cases": [case(8, 20.0, 60.0, 29.0, pdl=19.0), case(1, 20.1, 60.0, 31.0), case(4096, 100.0, 86.0, 80.0)]}
    rows = {(r["target"], r["M"]): r for r in vnv.wo_target_rows([rec])}
    assert list(rows) == [("3x cuBLAS bf16", 1), ("3x cuBLAS bf16", 8), ("1.5x torch fp8", 1), ("1.5x torch fp8", 8),
                          ("within 1.15x of cuBLAS bf16", 1), ("within 1.15x of cuBLAS bf16", 8),
                          ("within 1.15x of cuBLAS bf16", 4096), ("rel-L2 <= 0.001", "all")]
    r = rows[("3x cuBLAS bf16", 1)]
    assert r["measured"] == 2.99 and r["met"] is False and r["met with PDL"] is None  # 60 / 20.1 = 2.985
    r = rows[("3x cuBLAS bf16", 8)]
    assert r["met"] is True and r["with PDL"] == 3.16 and r["met with PDL"] is True
    assert rows[("1.5x torch fp8", 8)]["met"] is False and rows[("1.5x torch fp8", 1)]["met"] is True  # 1.45, 1.54
    assert rows[("within 1.15x of cuBLAS bf16", 1)]["met"] is True
    assert rows[("within 1.15x of cuBLAS bf16", 4096)]["met"] is False  # 86 / 100 = 0.86 < 1 / 1.15 = 0.8696
    acc = rows[("rel-L2 <= 0.001", "all")]
    assert acc["measured"] == 5e-4 and acc["met"] is True
    rec["cases"][0]["validation"]["passed"] = False  # a failed validation fails the target whatever the error
    assert [r for r in vnv.wo_target_rows([rec]) if r["M"] == "all"][0]["met"] is False


def test_x_share_rows_of_the_h200_trace():
    """vnv.x_share_rows: per M the four lean 3215 GEMM kernels of the x trace (stream, stream without x, full, full
    without x) and their differences, read from the trace's CUPTI entries."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    tr = nbutil.diagnostic("wo_trace_x_h200")
    rec = json.loads((Path(__file__).resolve().parents[1] / "data" / "results" / "wo_gemm.json").read_text())
    bounds = nbutil.wo_bounds(nbutil.wo_records(rec), tr["device"]["name"])  # the trace's own card's bounds
    assert bounds
    rows = vnv.x_share_rows(tr, bounds_us=bounds)
    assert [r["M"] for r in rows] == [8, 32, 64]
    assert [r["bound us"] for r in rows] == [round(bounds[m], 2) for m in (8, 32, 64)]
    for r in rows:
        case = tr["cases"][str(r["M"])]["variants"]
        full = next(e for n, e in case.items() if n.endswith("_red_grp_lean3215"))
        assert r["full kernel us"] == round(next(t["median_us"] for k, t in full["trace"]["kernels"].items()
                                                 if "w4a16" in k), 2)
        # (differences of the unrounded times: within two roundings of the rounded columns')
        assert abs(r["x in the stream us"] - (r["stream us"] - r["stream without x us"])) <= 0.011
        assert abs(r["x in the full kernel us"] - (r["full kernel us"] - r["full without x us"])) <= 0.011
    assert vnv.x_share_rows(tr, lean=1) == []  # no such builds in the run


def test_ab_rows_of_the_h200_runs():
    """vnv.ab_rows: the fifteenth pass's A/B runs, each row with its commit, bound and validation; one fastest per run
    and M."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    ab = nbutil.diagnostic("wo_ab_h200")
    rows = vnv.ab_rows(ab, "Fifteenth pass")
    assert rows and all(r["commit"] and r["validated"] and r["us"] >= r["bound us"] for r in rows)
    per_run_m = {(r["commit"], r["M"]) for r in rows}
    assert sum(r["fastest in its run"] for r in rows) == len(per_run_m)
    assert {r["commit"] for r in rows} == {"46868e8", "b8569d9", "74717ef"}
    assert vnv.ab_rows(ab, "no such run") == []


def test_v9_rows_of_the_h200_runs():
    """vnv.v9_rows: the last v9p run, rows sorted by M and then time, each fused build validated within 1e-3 and
    above the bound, the diagnostic twins without a rel-L2, cuBLAS at 1.00x; `only` keeps the recorded path and
    cuBLAS."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    d = nbutil.diagnostic("wo_v9_h200")
    rows = vnv.v9_rows(d)
    assert rows and [r["M"] for r in rows] == sorted(r["M"] for r in rows)
    for m in {r["M"] for r in rows}:
        us = [r["us"] for r in rows if r["M"] == m]
        assert us == sorted(us)
    for r in rows:
        assert r["us"] >= r["bound us"] and r["commit"] == d["runs"][-1]["commit"]
        if "diag" in r["build"] or r["build"] == "cublas_bf16":
            assert r["rel-L2"] is None
        else:
            assert 0 < r["rel-L2"] <= 1e-3
    assert all(r["vs cuBLAS bf16"] == 1.0 for r in rows if r["build"] == "cublas_bf16")
    few = vnv.v9_rows(d, run="55136d6", only=("w16_ch8_st4_er",))
    assert {r["build"] for r in few} == {"recorded", "recorded_pdl", "cublas_bf16", "v9p_s7_nt1_w16_ch8_st4_er",
                                         "v9p_s7_nt1_w16_ch8_st4_er_pdl"}
    first = vnv.v9_rows(d, run=0)
    assert first and all(r["commit"] == "b54cdc3" for r in first)
    assert vnv.v9_rows(d, run="55136d6") == vnv.v9_rows(d, run=[r["commit"] for r in d["runs"]].index("55136d6"))
    ncu = vnv.v9_ncu_rows(d, {1: 15.5})
    assert len(ncu) == len(d["ncu"]["rows"]) and all(r["duration_us"] > 15.5 for r in ncu)
    assert all((r["% of bound"] == round(100 * 15.5 / r["duration_us"])) if r["M"] == 1 else r["bound us"] is None
               for r in ncu)
    with pytest.raises(KeyError, match="no run"):
        vnv.v9_run(d, "0000000")


def test_power_rows_of_the_h200_run():
    """vnv.power_rows: the last clock and power run, one row per build sorted by M, the probe's median, the power-cap
    count and, for validated fused builds, cuBLAS bf16's time over theirs at the same M."""
    import statistics

    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    pw = nbutil.diagnostic("wo_power_h200")
    builds = pw["runs"][-1]["builds"]
    rows = vnv.power_rows(pw, bounds_us={1: 15.6})
    assert len(rows) == len(builds) and [r["M"] for r in rows] == sorted(r["M"] for r in rows)
    by = {(r["M"], r["build"]): r for r in rows}
    rec = by[(1, "record build (lean 27791, 128 CTAs)")]
    b = builds["M=1 record build (lean 27791, 128 CTAs)"]
    assert rec["probe GHz"] == statistics.median(b["probe_GHz"]) and rec["validated"] is True
    assert rec["cuBLAS bf16 / this"] == round(builds["M=1 cuBLAS bf16"]["us_per_call"] / b["us_per_call"], 2)
    assert rec["bound us"] == 15.6 and "bound us" not in by[(8, "cuBLAS bf16")]
    stream = by[(8, "DIAG 1: the stream alone (lean 3215)")]
    assert stream["validated"] == "no output (diagnostic)" and "cuBLAS bf16 / this" not in stream
    assert by[(64, "recorded build (lean 19599)")]["power-capped samples"].split(" / ")[0] != "0"


def test_clock_stream_rows_of_the_h200_run():
    """vnv.clock_stream_rows: the last companion run, one row per workload and companion, each with its rate as a
    percentage of the given copy bandwidth; the idle companion is its workload's yardstick (vs sleep x4 = 1)."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    diag = nbutil.diagnostic("clock_stream_h200")
    rows = vnv.clock_stream_rows(diag, copy_TBps=4.0)
    src = diag["runs"][-1]["rows"]
    assert len(rows) == len(src) and len({(r["workload"], r["companion"]) for r in rows}) == len(rows)
    for r, s in zip(rows, src):
        assert r["% of copy bandwidth"] == round(s["GB_per_s"] / 40.0, 1)
        if r["companion"] == "sleep x4":
            assert r["vs sleep x4"] == 1.0
        if r["companion"] != "none":
            assert r["companion covered the timing"] is True and r["companion GHz"] > 1.0
    assert "% of copy bandwidth" not in vnv.clock_stream_rows(diag)[0]


def test_ab_protocol_rows_and_run_commits():
    """vnv.run_commits: a run without a commit in its note takes the one before; ab_protocol_rows: only runs timed with
    their baselines, each build's record and scrubbed rows together, with the bound and both ratios."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    runs = [{"what": "a, commit abcdef0"}, {"what": "the same call, scrubbed"}, {"what": "b, commit 1234567"}, {}]
    assert vnv.run_commits(runs) == ["abcdef0", "abcdef0", "1234567", "1234567"]
    rows = vnv.ab_protocol_rows(nbutil.diagnostic("wo_ab_h100"))
    assert rows and {r["protocol"] for r in rows} == {"record", "scrubbed"}
    assert all(r["commit"] and r["us"] >= r["bound us"] and r["vs cuBLAS bf16"] > 1 for r in rows)
    keys = [(r["M"], r["build"], r["commit"], r["protocol"]) for r in rows]
    assert keys == sorted(keys)


def test_results_live_switch_on_cpu():
    """nbutil.results on a CPU device: live None or False shows the committed record; live=True is an InputError that
    names the argument and the device it got."""
    import torch

    from workbench import nbutil
    from workbench.runtime.checks import InputError

    cpu = torch.device("cpu")
    for live in (None, False):
        rec = nbutil.results("copy", cpu, live=live)
        assert rec["technique"] == "copy" and not rec.get("live")
    with pytest.raises(InputError, match=r"live=True needs a CUDA device, got device cpu"):
        nbutil.results("copy", cpu, live=True)


def test_quantizer_rows_per_card_and_the_h200_diagnostic():
    """nbutil.card_records("nvfp4"): the main record, then one committed run per other GPU model;
    vnv.quantize_card_rows puts each case's default and fastest kernel beside its bound; vnv.quant_diag_rows reads the
    H200 quantizer diagnostic's last run, fastest first, twins unvalidated and every other build exact."""
    from workbench import nbutil
    from workbench.runtime.kernels import REPO_ROOT
    from workbench.viz import nvfp4 as vnv

    main = json.loads((REPO_ROOT / "data/results/nvfp4.json").read_text())
    recs = nbutil.card_records("nvfp4", main)
    assert recs[0] is main and len({r["device"]["name"] for r in recs}) == len(recs)
    for rec in recs:
        rows = vnv.quantize_card_rows(rec)
        assert [r["case"] for r in rows] == [c["name"] for c in rec["cases"]]
        for r, c in zip(rows, rec["cases"]):
            assert r["default"] == c["optimized"] and r["best us"] <= r["default us"]
            assert r["default % of bound"] == round(100 * c["bound_us"] / c["variants"][c["optimized"]]["median_us"])
    for name in ("quant_v6_h200", "quant_v11_h200"):
        diag = nbutil.diagnostic(name)
        rows = vnv.quant_diag_rows(diag)
        for case in diag["runs"][-1]["cases"]:
            times = [r["us"] for r in rows if r["case"] == case]
            assert times == sorted(times) and len(times) == len(diag["runs"][-1]["cases"][case]["variants"])
        assert all((r["exact"] is None) == ("diag" in r["build"]) for r in rows)
        assert all(r["exact"] for r in rows if "diag" not in r["build"])
        assert all(all(r["validation"].values()) for r in diag["runs"])  # every check of every run passed


def test_quant_diag_fastest():
    """vnv.quant_diag_fastest: per case and label the fastest build whose name matches the label's pattern; a label
    with no match in a case is absent."""
    from workbench.viz import nvfp4 as vnv

    rows = [{"case": "a", "build": b, "us": us} for b, us in
            (("v5_x", 3.0), ("v5_y", 2.0), ("v11_x", 1.5), ("v8_diag_no_encode", 1.0))]
    rows.append({"case": "b", "build": "v5_x", "us": 4.0})
    best = vnv.quant_diag_fastest(rows, {"v5": "^v5", "v11": "^v11", "floor": "diag"})
    assert {k: r["build"] for k, r in best["a"].items()} == {"v5": "v5_y", "v11": "v11_x", "floor": "v8_diag_no_encode"}
    assert {k: r["build"] for k, r in best["b"].items()} == {"v5": "v5_x"}
    for r in rows:
        r["% of bound"] = round(100 / r["us"], 1)
    lines = vnv.quant_diag_summary(rows, {"v5": "^v5", "floor": "diag"})
    assert lines["a"] == ("a: fastest v5 v5_y 2.0 us (50.0% of the bound), "
                          "fastest floor v8_diag_no_encode 1.0 us (100.0% of the bound)")
    assert lines["b"] == "b: fastest v5 v5_x 4.0 us (25.0% of the bound)"


def test_quant_v11_diagnostic_profiler_counts():
    """The v11 diagnostic's Nsight Compute rows: instructions per element recomputed from the warp-instruction count
    of the [8192, 7168] launch, and v11 issuing fewer of them than v5, as notebook 01 says."""
    from workbench import nbutil

    ncu = nbutil.diagnostic("quant_v11_h200")["ncu_8192x7168"]
    for k in ncu:
        assert k["instructions_per_element"] == round(k["warp_instructions"] * 32 / (8192 * 7168), 2)
    v5 = next(k for k in ncu if k["kernel"].startswith("nvfp4_quantize_v5"))
    v11 = [k for k in ncu if k["kernel"].startswith("nvfp4_quantize_v11")]
    assert v11 and all(k["instructions_per_element"] < v5["instructions_per_element"] for k in v11)


def test_quantize_target_rows():
    """vnv.quantize_target_rows: one row per quantize case (not the dequantize one), layout present and record, the
    layout's default kernel's % of the bound against 85%, unrounded; an inexact case fails the target."""
    from workbench.viz import nvfp4 as vnv

    def case(name, bound, us, lin_us=None, passed=True):
        v = {"cupy_quantize_swizzled": {"median_us": us}}
        if lin_us is not None:
            v["cupy_quantize_linear"] = {"median_us": lin_us}
        return {"name": name, "bound_us": bound, "optimized": "cupy_quantize_swizzled", "variants": v,
                "validation": {"passed": passed}}

    rec = {"device": {"name": "GPU X"}, "git_commit": "abc1234",
           "cases": [case("quantize_8192x7168", 84.99, 100.0, 99.0), case("quantize_8192x16384", 85.0, 100.0),
                     case("dequantize_c", 90, 100)]}
    rows = vnv.quantize_target_rows([rec])
    assert [(r["case"], r["layout"], r["met"]) for r in rows] == [
        ("quantize_8192x7168", "swizzled", False), ("quantize_8192x7168", "linear", True),
        ("quantize_8192x16384", "swizzled", True)]
    rec["cases"][1]["validation"]["passed"] = False
    assert not vnv.quantize_target_rows([rec])[2]["met"]
    from workbench.runtime.kernels import REPO_ROOT

    main = vnv.quantize_target_rows([json.loads((REPO_ROOT / "data/results/nvfp4.json").read_text())])
    assert {r["layout"] for r in main} == {"swizzled", "linear"}  # the committed record times both defaults
    assert {r["case"] for r in main} == set(vnv.QUANT_TARGET_CASES)


def test_target_rows_skip_smoke_shapes():
    """A smoke run's record (smaller shapes) is not judged against the targets: wo_target_rows and
    quantize_target_rows give it no rows, and judged_records sets it apart."""
    from workbench.viz import nvfp4 as vnv

    wo = {"device": {"name": "GPU X"}, "git_commit": "abc1234", "live": True,
          "cases": [{"name": "wo_M1", "params": {"M": 1, "N": 1024, "K": 2048}, "validation": {"passed": True},
                     "variants": {"cublas_bf16": {"median_us": 3.0}, "torch_fp8": {"median_us": 2.0},
                                  "optimized": {"median_us": 1.0}}}]}
    assert vnv.wo_target_rows([wo]) == []
    assert vnv.judged_records([wo], "wo") == ([], [wo])
    q = {"device": {"name": "GPU X"}, "git_commit": "abc1234",
         "cases": [{"name": "quantize_256x7168", "bound_us": 1.0, "optimized": "cupy_quantize_swizzled",
                    "variants": {"cupy_quantize_swizzled": {"median_us": 4.0}}, "validation": {"passed": True}}]}
    assert vnv.quantize_target_rows([q]) == [] and vnv.judged_records([q], "quantize") == ([], [q])


def test_v9_timeline_rows_and_figure():
    """vnv.v9_timeline_rows / fig_v9_stage_arrivals on the H200 timelines: in the 9b3a115 run every full build's
    stage 0 is full earlier with x first than with x last, each full build's tail is positive and its unstamped time
    present, the stream-only twins' tails are short; the figure has one trace per selected build; an unknown run
    raises KeyError naming it."""
    from workbench import nbutil
    from workbench.viz import nvfp4 as vnv

    tl = nbutil.diagnostic("wo_v9_timeline_h200")
    rows = {r["build"]: r for r in vnv.v9_timeline_rows(tl, "9b3a115", bound_us=15.5)}
    full = [b for b in rows if "diag" not in b]
    assert full and all(b.endswith(("_xfirst", "_xlast")) for b in rows)
    for b in (b for b in full if b.endswith("_xfirst")):
        last = b.removesuffix("_xfirst") + "_xlast"
        assert rows[b]["stage 0 full"] < rows[last]["stage 0 full"]
    for b in full:
        assert rows[b]["tail"] > 0 and rows[b]["timed us (no stamps)"] > rows[b]["bound us"] and rows[b]["GHz"] > 1
    for b in (b for b in rows if "diag_stream" in b):
        assert 0 < rows[b]["tail"] < min(rows[f]["tail"] for f in full)
    fig = vnv.fig_v9_stage_arrivals(tl, "9b3a115", builds=("w8_ch8",))
    assert len(fig.data) == sum("w8_ch8" in b for b in rows)
    with pytest.raises(KeyError, match="nope"):
        vnv.v9_timeline_rows(tl, "nope")
