"""Common output of every task: the JSON document, a markdown table and a plot.

JSON: ``{"task", "protocol", "data", "results": {METHOD: {GROUP: {METRIC: value}}}}``, GROUP ``"all"``
always present; an infinite or undefined value (a median error when most pairs failed) is null.

A markdown table is described by columns ``(header, group, metric, key)``: the value is
``results[method][group][metric]``, indexed by ``key`` when not None (a list index or a dict key).
Rows are the methods, in the order of the results.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm


def document(task, protocol, data, results):
    if any("all" not in groups for groups in results.values()):
        raise ValueError("every method needs an 'all' group")
    return {"task": task, "protocol": protocol, "data": data, "results": results}


def failure(what, error):
    """Report a failed image, pair or sequence on stderr (the caller counts it as a failure)."""
    tqdm.write(f"FAILED {what}: {type(error).__name__}: {error}", file=sys.stderr)


def by_group(records, groups, summarise):
    """{METHOD: {GROUP: summary}} from {METHOD: [(record's groups, record)]}; "all" takes every record,
    and a group without records is left out."""
    results = {}
    for name, pairs in records.items():
        summaries = {g: summarise([r for member, r in pairs if g == "all" or g in member]) for g in groups}
        results[name] = {g: value for g, value in summaries.items() if value is not None}
    return results


def bootstrap_sd(values, statistic, resamples=1000, seed=0):
    """Standard deviation of ``statistic(values)`` over resamplings of the values (one per image pair) with
    replacement: how much a figure depends on which pairs the set happens to hold (seeded, so reruns agree)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    figures = [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(resamples)]
    return np.std(np.asarray(figures), axis=0).tolist()


def add_reference_argument(parser):
    parser.add_argument("--reference", metavar="METHOD",
                        help="also report every other method's figure minus this method's on the same pairs, with "
                             "its paired bootstrap sd (a method name as in the tables, e.g. DesDis-16)")


def check_reference(reference, methods):
    if reference is not None and reference not in [m.name for m in methods]:
        raise ValueError(f"--reference {reference!r} is not one of the methods {[m.name for m in methods]}")


def paired_differences(records, reference, groups, per_pair, statistic):
    """{METHOD: {GROUP: (difference, sd)}}: ``statistic`` of each method's pairs minus the ``reference``'s
    on the same pairs, and the sd of that difference over 1000 resamplings of the pairs that draw the
    same pairs for both methods (a paired bootstrap: what is shared by the pairs, such as how hard
    each is, cancels out). records: {METHOD: [(record's groups, record)]}, the same pairs in the same
    order for every method; per_pair(records) -> one array row per record."""
    out = {}
    for name, pairs in records.items():
        if name == reference:
            continue
        for group in groups:
            rows = [i for i, (member, _) in enumerate(pairs) if group == "all" or group in member]
            if not rows:
                continue
            values = per_pair([pairs[i][1] for i in rows] + [records[reference][i][1] for i in rows])
            both = np.stack([values[:len(rows)], values[len(rows):]], axis=1)

            def gain(resampled):
                return np.asarray(statistic(resampled[:, 0])) - np.asarray(statistic(resampled[:, 1]))

            out.setdefault(name, {})[group] = (gain(both).tolist(), bootstrap_sd(both, gain))
    return out


def reference_columns(results, group, figure, metric, key):
    """The two table columns of a paired comparison ("<figure> vs METHOD", "paired sd"), or none when
    the results hold no reference."""
    reference = next((r[group]["reference"] for r in results.values() if "reference" in r.get(group, {})), None)
    if reference is None:
        return []
    return [(f"{figure} vs {reference}", group, metric, key), ("paired sd", group, f"{metric}_sd", key)]


def paired_text(reference):
    return (f" vs {reference}: a method's figure minus {reference}'s on the same pairs; paired sd: its standard "
            f"deviation over 1000 resamplings of the pairs, the same pairs for both." if reference else "")


def _strict(value):
    """JSON has no infinity or NaN: they are written as null."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(doc, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_strict(doc), indent=1, allow_nan=False) + "\n")


def _cell(value, digits):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.{digits}f}"


def table(results, columns, digits=2):
    """Markdown table, one row per method; missing groups or metrics are shown as '-'."""
    lines = ["| method | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method, groups in results.items():
        cells = []
        for _, group, metric, key in columns:
            value = groups.get(group, {}).get(metric)
            if value is not None and key is not None:
                value = value[key]
            cells.append(_cell(value, digits))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(doc, sections, path):
    """sections: list of (title, table text). The protocol line heads the file."""
    text = [f"## {doc['task']}", "", doc["protocol"], ""]
    for title, body in sections:
        text += [f"### {title}", "", body, ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


def pyplot():
    """matplotlib.pyplot, imported only when a plot is asked for."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'descplug[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(results, panels, title, path):
    """One bar panel per (panel title, group, metric, key); one bar per method."""
    plt = pyplot()
    methods = list(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.4 * len(methods) + 1.5),
                             squeeze=False)
    for ax, (panel, group, metric, key) in zip(axes[0], panels):
        values = []
        for method in methods:
            value = results[method].get(group, {}).get(metric)
            values.append(float("nan") if value is None else (value if key is None else value[key]))
        ax.barh(range(len(methods)), values)
        ax.set_yticks(range(len(methods)), methods if ax is axes[0][0] else [""] * len(methods))
        ax.invert_yaxis()
        ax.set_title(panel)
        ax.grid(axis="x", linestyle="--", alpha=0.5)
    fig.suptitle(title)
    _save(fig, path)


def plot_curves(x, curves, panels, xlabel, ylabel, title, path, ylim=None):
    """curves: {panel: {method: y values}}; one panel per name in panels."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for method, y in curves[panel].items():
            ax.plot(x, y, marker="o", markersize=3, label=method)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylim(ylim)
        ax.grid(linestyle="--", alpha=0.5)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
