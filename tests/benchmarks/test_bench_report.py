import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import pose, report
from benchmarks.__main__ import main

RESULTS = {"a": {"all": {"x": 1.23456, "d": {"5": 50.0}, "n": 3}, "g": {"x": float("inf")}},
           "b": {"all": {"x": None, "d": {"5": 10.0}, "n": 4}}}


def test_document_needs_the_all_group():
    with pytest.raises(ValueError, match="'all' group"):
        report.document("t", "p", {}, {"a": {"g": {}}})


def test_json_is_strict(tmp_path):
    path = tmp_path / "out" / "r.json"
    report.write_json(report.document("t", "p", {"median": float("nan")}, RESULTS), path)
    doc = json.loads(path.read_text())
    assert doc["results"]["a"]["g"]["x"] is None and doc["data"]["median"] is None
    assert doc["results"]["a"]["all"]["d"] == {"5": 50.0}


def test_markdown_table_cells():
    columns = [("x", "all", "x", None), ("d5", "all", "d", "5"), ("n", "all", "n", None), ("gx", "g", "x", None)]
    lines = report.table(RESULTS, columns).splitlines()
    assert lines[0] == "| method | x | d5 | n | gx |"
    assert lines[2] == "| a | 1.23 | 50.00 | 3 | inf |"
    assert lines[3] == "| b | - | 10.00 | 4 | - |"


def test_by_group_keeps_groups_with_records():
    records = {"m": [(("v", "oxford"), 1.0), (("i",), 3.0)]}
    summary = report.by_group(records, ("all", "i", "v", "other", "oxford"), lambda rs: sum(rs) / len(rs) if rs else None)
    assert summary == {"m": {"all": 2.0, "i": 3.0, "v": 1.0, "oxford": 1.0}}


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["sequences", "--root", str(tmp_path), "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_paired_differences_to_a_reference_cancel_what_the_pairs_share():
    rng = np.random.default_rng(0)
    hardness = rng.uniform(0, 30, 40)  # pose error scale of each pair, shared by both methods

    def records(offset):
        return [(("s",), {"error": tuple(h + offset + rng.uniform(0, 0.5, 2)), "matches": 10, "gt_inliers": 5,
                          "failed": False}) for h in hardness]

    recs = {"ref": records(0.0), "better": records(-1.0)}
    recs["same"] = list(recs["ref"])
    recs["better"][0] = (("s",), pose.FAILED)  # one error standing for every ordering
    out = report.paired_differences(recs, "ref", ["all", "s"], pose.error_matrix, pose.mean_auc)
    assert set(out) == {"better", "same"} and out["better"]["all"] == out["better"]["s"]
    summary = {name: pose.summarise([r for _, r in recs[name]]) for name in recs}
    (difference, sd), (same, same_sd) = out["better"]["all"], out["same"]["all"]
    for i, t in enumerate(("5", "10", "20")):
        assert 100 * difference[i] == pytest.approx(summary["better"]["auc"][t] - summary["ref"]["auc"][t])
        assert same[i] == 0 and same_sd[i] == 0
    # the paired spread is far below each method's own spread over resampled pairs
    assert 0 < 100 * sd[1] < summary["ref"]["auc_sd"]["10"] / 3


def test_a_reference_must_be_one_of_the_methods():
    methods = [SimpleNamespace(name="sift"), SimpleNamespace(name="DesDis-16")]
    report.check_reference(None, methods)
    report.check_reference("DesDis-16", methods)
    with pytest.raises(ValueError, match=r"--reference 'DesDis-8' is not one of the methods \['sift', 'DesDis-16'\]"):
        report.check_reference("DesDis-8", methods)
