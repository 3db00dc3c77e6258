"""weights/recipes/evaluate.py --cards: figures and commands go into the model cards; the cards'
written notes on their benchmarks survive a re-measurement."""
import json

from descplug.models.student import DesDisNet
from descplug.models.zoo import save_checkpoint
from descplug.train.card import read_card, write_card


def test_cards_get_the_new_figures_and_keep_their_notes(tmp_path, monkeypatch, recipe_script):
    script = recipe_script("evaluate")
    paths = [save_checkpoint(DesDisNet(width=4), tmp_path / f"{name}.pt", meta={}) for name in ("old", "new")]
    write_card(paths[0], {"name": "old", "benchmarks": {"results": {"old": {"Oxford MMA@3": 0.1}},
                                                        "notes": "Beats SIFT on Oxford."}})
    write_card(paths[1], {"name": "new"})
    figures = {"old": {"Oxford MMA@3": 0.5}, "new": {"Oxford MMA@3": 0.6}, "sift": {"Oxford MMA@3": 0.4}}
    monkeypatch.setattr(script, "run", lambda models, baselines, out, tasks: (figures, {"Oxford MMA@3": "cmd"}))
    assert script.main(["--out", str(tmp_path / "eval"), "--cards", "--quick", "--models", *map(str, paths)]) == 0
    old, new = read_card(paths[0]), read_card(paths[1])
    assert old["benchmarks"]["results"] == new["benchmarks"]["results"] == figures
    assert old["benchmarks"]["notes"] == "Beats SIFT on Oxford."
    assert new["benchmarks"]["notes"] == script.SAME_COMMANDS
    assert "Beats SIFT on Oxford." in (tmp_path / "old.md").read_text()
    assert json.loads((tmp_path / "eval" / "figures.json").read_text())["figures"] == figures
