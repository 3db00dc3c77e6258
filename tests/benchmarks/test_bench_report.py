import json
import sys

import pytest

from benchmarks import report
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
