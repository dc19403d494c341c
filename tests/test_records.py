"""Result records: every committed record matches the schema and the code it was measured with."""

import copy
import json

import jsonschema
import pytest

from workbench.bench import records as R
from workbench.bench.timing import Timing

RECORDS = sorted(R.RESULTS_DIR.glob("*.json"))


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_committed_record_is_valid_and_fresh(path):
    rec = json.loads(path.read_text())
    R.validate_record(rec)
    assert rec["technique"] == path.stem
    assert not R.is_stale(rec), (f"{path.name} is stale: its sources {rec['sources']} changed since it was "
                                 f"recorded; run `workbench bench {path.stem} --record` on a GPU")
    for case in rec["cases"]:
        assert case["validation"]["passed"], f"{path.name}/{case['name']}: recorded without passing validation"


def _case(**kw):
    t = Timing(10.0, 9.0, 11.0, 20)
    args = dict(name="c", params={}, variants={"a": t, "b": Timing(5.0, 4.5, 5.5, 20)}, baseline="a",
                optimized="b", bound_us=4.0, validation={"passed": True})
    args.update(kw)
    return R.Case(**args)


def test_case_roles_must_be_variants():
    with pytest.raises(ValueError, match="optimized 'z' is not one of the variants"):
        _case(optimized="z")
    with pytest.raises(ValueError, match="validation must say whether it passed"):
        _case(validation={})
    assert _case().speedup == pytest.approx(2.0)


def _record():
    return R.make_record("copy", [_case()], ("workbench/techniques/copy.py", "copy"), command="test")


def test_made_record_validates_and_is_fresh():
    rec = _record()
    R.validate_record(rec)
    assert not R.is_stale(rec)
    assert rec["cases"][0]["variants"]["b"] == {"median_us": 5.0, "p20_us": 4.5, "p80_us": 5.5}


def test_schema_rejects_broken_records():
    rec = _record()
    bad = copy.deepcopy(rec)
    del bad["source_hash"]
    with pytest.raises(jsonschema.ValidationError):
        R.validate_record(bad)
    bad = copy.deepcopy(rec)
    bad["cases"][0]["variants"]["a"]["median_us"] = -1
    with pytest.raises(jsonschema.ValidationError):
        R.validate_record(bad)
    bad = copy.deepcopy(rec)
    bad["cases"][0]["baseline"] = "nope"
    with pytest.raises(jsonschema.ValidationError, match="baseline 'nope' is not a variant"):
        R.validate_record(bad)


def test_stale_when_sources_change():
    rec = _record()
    rec["source_hash"] = "0" * 64
    assert R.is_stale(rec)
    assert "STALE" in R.provenance(rec)


def test_write_and_load_roundtrip(tmp_path):
    rec = _record()
    path = R.write_record(rec, tmp_path)
    assert path == tmp_path / "copy.json"
    assert R.load_record("copy", tmp_path) == json.loads(path.read_text())
