"""The experiments of a repository in one table that fits a terminal: ranked by validation
loss, with only the params that differ between them, test skill with its interval, its move
and direction parts, Sharpe.

    python -m finseq.experiments [--markdown] [--width 100]

Built on `dvc exp show --json --all-branches`: the workspace, every branch tip and every
`dvc exp` run on top of them. Validation loss is the pooled one of metrics/eval.json (every
scored fold's model on its own validation windows), the one selection may use; the test
columns are shown beside it, never ranked on.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from finseq.errors import DataError, UserError
from finseq.markdown import markdown_table
from finseq.paths import EVAL_METRICS, PARAMS_FILE

DEFAULT_WIDTH = 100
NAME_WIDTH = 16
# The terminal table's shorter headers for the columns named as metrics/eval.json names them
# (the Markdown table keeps the full names); a legend line under the table says which is which.
TERMINAL_HEADERS = {"move_skill": "move", "direction_skill": "direction"}


@dataclass(frozen=True)
class Experiment:
    name: str
    params: dict[str, object]  # dotted key -> value
    metrics: dict[str, object]  # dotted key -> value, from metrics/eval.json


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _file_data(data: dict, kind: str, path: str) -> dict:
    return ((data or {}).get(kind) or {}).get(path, {}).get("data") or {}


def _revision(entry: dict, name: str) -> Experiment:
    data = entry.get("data") or {}
    return Experiment(
        name=name,
        params=flatten(_file_data(data, "params", PARAMS_FILE)),
        metrics=flatten(_file_data(data, "metrics", EVAL_METRICS)),
    )


def parse_exp_show(rows: list[dict]) -> list[Experiment]:
    """`dvc exp show --json` → one Experiment per workspace, branch tip and experiment."""
    experiments = []
    for row in rows:
        name = row.get("name") or (row["rev"] if row["rev"] == "workspace" else row["rev"][:7])
        experiments.append(_revision(row, name))
        for experiment in row.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                label = revision.get("name") or experiment.get("name") or revision["rev"][:7]
                experiments.append(_revision(revision, label))
    return experiments


def differing_params(experiments: Sequence[Experiment]) -> list[str]:
    """Dotted params keys whose value is not the same in every experiment, in file order."""
    keys: list[str] = []
    for experiment in experiments:
        keys += [key for key in experiment.params if key not in keys]
    return [
        key
        for key in keys
        if len({json.dumps(e.params.get(key), sort_keys=True) for e in experiments}) > 1
    ]


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def ranked(experiments: Sequence[Experiment]) -> list[Experiment]:
    """By pooled validation loss, lowest first; experiments without one come last, in order."""

    def order(experiment: Experiment) -> tuple[bool, float]:
        loss = _number(experiment.metrics.get("val.loss"))
        return (math.isnan(loss), 0.0 if math.isnan(loss) else loss)

    return sorted(experiments, key=order)


def _skill(metrics: dict) -> str:
    skill = _number(metrics.get("test.skill"))
    if math.isnan(skill):
        return "-"
    low, high = _number(metrics.get("test.skill_low")), _number(metrics.get("test.skill_high"))
    if math.isnan(low) or math.isnan(high):
        return f"{skill:+.3f}"
    return f"{skill:+.3f} [{low:+.3f},{high:+.3f}]"


def _fixed(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def short_key(key: str, keys: Sequence[str]) -> str:
    """The last part of a dotted key when no other differing key shares it."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def table_rows(experiments: Sequence[Experiment]) -> tuple[list[str], list[list[str]]]:
    keys = differing_params(experiments)
    headers = [
        "#",
        "experiment",
        "params",
        "val loss",
        "test skill [95%]",
        "move_skill",
        "direction_skill",
        "Sharpe",
    ]
    rows = []
    for rank, experiment in enumerate(ranked(experiments), start=1):
        shown = " ".join(
            f"{short_key(key, keys)}={experiment.params.get(key, '-')}" for key in keys
        )
        rows.append(
            [
                str(rank),
                experiment.name,
                shown or "-",
                _fixed(_number(experiment.metrics.get("val.loss")), ".4f"),
                _skill(experiment.metrics),
                _fixed(_number(experiment.metrics.get("test.move_skill")), "+.3f"),
                _fixed(_number(experiment.metrics.get("test.direction_skill")), "+.3f"),
                _fixed(_number(experiment.metrics.get("test.sharpe")), "+.2f"),
            ]
        )
    return headers, rows


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def text_table(experiments: Sequence[Experiment], width: int = DEFAULT_WIDTH) -> str:
    """Columns padded to fit `width`; the names and the params column are cut with … to fit."""
    headers, rows = table_rows(experiments)
    headers = [TERMINAL_HEADERS.get(header, header) for header in headers]
    for row in rows:
        row[1] = _clip(row[1], NAME_WIDTH)
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    others = sum(w for i, w in enumerate(widths) if i != 2) + 2 * (len(widths) - 1)
    widths[2] = max(len(headers[2]), min(widths[2], width - others))
    for row in rows:
        row[2] = _clip(row[2], widths[2])
    lines = []
    for cells in [headers, *rows]:
        padded = [
            cell.ljust(widths[i]) if i in (1, 2) else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append("  ".join(padded).rstrip())
    legend = "; ".join(f"{short} = test.{full}" for full, short in TERMINAL_HEADERS.items())
    return "\n".join([*lines, _clip(legend, width)])


def markdown_ranking(experiments: Sequence[Experiment]) -> str:
    """The same ranking as a Markdown table for a PR comment, names and params in full."""
    return markdown_table(*table_rows(experiments))


def exp_show() -> list[dict]:
    """`dvc exp show --json --all-branches` of the repository in the working directory."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-branches"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise DataError(f"dvc exp show: {lines[-1] if lines else 'failed'}")
    return json.loads(result.stdout)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m finseq.experiments", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="columns (text table)")
    args = parser.parse_args(argv)
    try:
        experiments = parse_exp_show(exp_show())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(markdown_ranking(experiments) if args.markdown else text_table(experiments, args.width))


if __name__ == "__main__":
    main()
