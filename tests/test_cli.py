"""The `workbench` command on a CPU-only machine."""

import pytest
import torch

from workbench import cli


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "copy" in out and "00_overview" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_bench_without_gpu_says_so(capsys):
    assert cli.main(["bench", "copy"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_doctor_compiles_every_kernel(capsys):
    pytest.importorskip("cuda.bindings.nvrtc")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "kernel copy" in out and "ok (sm_90a" in out


def test_parse_values():
    assert cli._parse_value("True") is True
    assert cli._parse_value("12") == 12
    assert cli._parse_value("[1, 2]") == [1, 2]
    assert cli._parse_value("cpu") == "cpu"


def test_run_unknown_notebook():
    with pytest.raises(SystemExit, match="no notebook matches 'zz_nothing'"):
        cli.main(["run", "zz_nothing", "--device", "cpu"])
