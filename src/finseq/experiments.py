"""The experiments of a repository in one table that fits a terminal: ranked by validation
loss, with only the params that differ between them, test skill with its interval, its move
and direction parts, Sharpe, and whether each is in the 90% Model Confidence Set of
out-of-sample loss; under the table, how many experiments it covers and the deflated Sharpe
ratio of the one of highest test Sharpe.

    python -m finseq.experiments [--markdown] [--width 100]

Built on `dvc exp show --json --all-branches`: the workspace, every branch tip and every
`dvc exp` run on top of them. Validation loss is the pooled one of metrics/eval.json (every
scored fold's model on its own validation windows), the one selection may use; the test
columns are shown beside it, never ranked on.

Each experiment's metrics/predictions.csv is read at its commit (`git show <rev>:...`; the
workspace's from disk) and judged with the workspace's `backtest` and `evaluate` params, as
the report does. The MCS column (finseq.selection) says which experiments the out-of-sample
windows cannot tell from the best on per-date log loss (`in`), which are beyond noise worse
(`out`), and `-` for an experiment without a predictions file. The deflated Sharpe ratio
(Bailey and López de Prado) of the experiment of highest `test.sharpe` is the probability
that its true Sharpe ratio is above 0 once the luck of picking the best of N is taken off.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from finseq.command import OneLineParser
from finseq.errors import DataError, UserError
from finseq.markdown import markdown_table
from finseq.paths import EVAL_METRICS, PARAMS_FILE, PREDICTIONS_FILE
from finseq.revisions import evidence_settings, read_predictions
from finseq.selection import (
    MCS_SIZE,
    ConfidenceSet,
    DeflatedSharpe,
    confidence_set,
    deflated_sharpe_of_best,
)
from finseq.verdicts import EvidenceSettings

DEFAULT_WIDTH = 100
NAME_WIDTH = 16
# The terminal table's shorter headers for the columns named as metrics/eval.json names them
# (the Markdown table keeps the full names); a legend line under the table says which is which.
TERMINAL_HEADERS = {"move_skill": "move", "direction_skill": "dir"}
MCS_HEADER = f"MCS {1 - MCS_SIZE:.0%}"  # "MCS" in the terminal, its line under the table says it


@dataclass(frozen=True)
class Experiment:
    name: str
    params: dict[str, object]  # dotted key -> value
    metrics: dict[str, object]  # dotted key -> value, from metrics/eval.json
    rev: str | None = None  # the commit (full sha); None: the workspace


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
    rev = entry.get("rev")
    return Experiment(
        name=name,
        params=flatten(_file_data(data, "params", PARAMS_FILE)),
        metrics=flatten(_file_data(data, "metrics", EVAL_METRICS)),
        rev=None if rev in (None, "workspace") else rev,
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


@dataclass(frozen=True)
class OutOfSample:
    """What the experiments' predictions files say beside the ranking: the Model Confidence
    Set of those with one, and the deflated Sharpe ratio of the best (None: nothing to
    deflate, `best` without a predictions file, or no experiment with a test Sharpe)."""

    confidence: ConfidenceSet = field(default_factory=lambda: confidence_set({}, 1, 1, 0))
    best: str | None = None  # the experiment of highest test.sharpe
    deflated: DeflatedSharpe | None = None
    settings: EvidenceSettings | None = None


def best_by_sharpe(experiments: Sequence[Experiment]) -> Experiment | None:
    """The experiment of highest test.sharpe (the first of equals); None if none has one."""
    scored = [e for e in experiments if not math.isnan(_number(e.metrics.get("test.sharpe")))]
    return max(scored, key=lambda e: _number(e.metrics["test.sharpe"]), default=None)


def out_of_sample(
    experiments: Sequence[Experiment],
    predictions: Mapping[str, pd.DataFrame],
    settings: EvidenceSettings | None,
) -> OutOfSample:
    """The MCS of the experiments given {name: predictions table}, and the deflated Sharpe
    ratio of the one of highest test.sharpe: its per-period returns from its predictions, N
    the experiments with a test.sharpe, each trial's per-period Sharpe ratio test.sharpe /
    sqrt(test.bars_per_year) (the best's bars per year where a trial lacks its own)."""
    if not predictions or settings is None:
        return OutOfSample(best=getattr(best_by_sharpe(experiments), "name", None))
    totals = {name: settings.totals(frame) for name, frame in predictions.items()}
    confidence = confidence_set(totals, settings.horizon, settings.resamples, settings.seed)
    best = best_by_sharpe(experiments)
    if best is None or best.name not in totals:
        return OutOfSample(confidence, getattr(best, "name", None), None, settings)

    def per_period(experiment: Experiment) -> float:
        per_year = _number(experiment.metrics.get("test.bars_per_year"))
        per_year = per_year if per_year > 0 else totals[best.name].per_year
        return _number(experiment.metrics.get("test.sharpe")) / math.sqrt(per_year)

    trials = {
        e.name: per_period(e)
        for e in experiments
        if not math.isnan(_number(e.metrics.get("test.sharpe")))
    }
    deflated = deflated_sharpe_of_best(best.name, totals[best.name].traded_returns(), trials)
    return OutOfSample(confidence, best.name, deflated, settings)


def _membership(name: str, confidence: ConfidenceSet) -> str:
    if name not in confidence.compared or confidence.members is None:
        return "-"
    return "in" if name in confidence.members else "out"


def summary_lines(experiments: Sequence[Experiment], evidence: OutOfSample) -> list[str]:
    """The lines under the table: what the ranking and the MCS cover, the MCS's settings,
    and the deflated Sharpe ratio of the best."""
    confidence = evidence.confidence
    count = f"{len(experiments)} experiments ranked; "
    if not confidence.compared:
        lines = [count + f"none with {PREDICTIONS_FILE}: no MCS comparison"]
    else:
        count += (
            f"{len(confidence.compared)} with predictions in the MCS comparison over "
            f"{confidence.dates:,} common dates"
        )
        if confidence.dates < confidence.all_dates:
            count += (
                f" (of {confidence.all_dates:,} dates scored by any: they scored different "
                "windows, and only the dates common to all are compared)"
            )
        lines = [count]
        if confidence.members is None:
            lines.append(
                f"no MCS: {confidence.dates} common dates are too few for a block bootstrap"
            )
        elif evidence.settings is not None:
            lines.append(
                f"{MCS_HEADER}: in the {1 - MCS_SIZE:.0%} Model Confidence Set of out-of-sample "
                f"log loss per date (arch MCS, stationary bootstrap, block {confidence.block}, "
                f"{evidence.settings.resamples} resamples, seed {evidence.settings.seed}); "
                f"- = no {PREDICTIONS_FILE}"
            )
    if evidence.deflated is not None:
        deflated = evidence.deflated
        value = "-" if math.isnan(deflated.value) else f"{deflated.value:.2f}"
        lines.append(
            f"deflated Sharpe of the best ({deflated.name}): {value} (probability its true "
            f"Sharpe > 0 after N={deflated.trials} trials; {deflated.periods:,} periods)"
        )
    elif evidence.best is not None:
        lines.append(
            f"deflated Sharpe of the best ({evidence.best}): - (no {PREDICTIONS_FILE} to "
            "take its returns from)"
        )
    return lines


def table_rows(
    experiments: Sequence[Experiment], evidence: OutOfSample | None = None
) -> tuple[list[str], list[list[str]]]:
    confidence = (evidence or OutOfSample()).confidence
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
        MCS_HEADER,
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
                _membership(experiment.name, confidence),
            ]
        )
    return headers, rows


def _columns(text: str) -> int:
    if not text.isdigit() or int(text) < 40:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 40")
    return int(text)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def text_table(
    experiments: Sequence[Experiment],
    width: int = DEFAULT_WIDTH,
    evidence: OutOfSample | None = None,
) -> str:
    """Columns padded to fit `width`; the names and the params column are cut with … to fit;
    the lines under it wrapped to `width`."""
    evidence = evidence or OutOfSample()
    headers, rows = table_rows(experiments, evidence)
    headers = [TERMINAL_HEADERS.get(header, header) for header in headers[:-1]] + ["MCS"]
    for row in rows:
        row[1] = _clip(row[1], NAME_WIDTH)
    widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]
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
    under = [textwrap.fill(line, width) for line in summary_lines(experiments, evidence)]
    return "\n".join([*lines, _clip(legend, width), *under])


def markdown_ranking(experiments: Sequence[Experiment], evidence: OutOfSample | None = None) -> str:
    """The same ranking as a Markdown table for a PR comment, names and params in full, and
    the same lines under it."""
    evidence = evidence or OutOfSample()
    table = markdown_table(*table_rows(experiments, evidence))
    return "\n\n".join([table, *summary_lines(experiments, evidence)]) + "\n"


def read_out_of_sample(experiments: Sequence[Experiment]) -> OutOfSample:
    """Each experiment's predictions file at its commit (the workspace's from disk), judged
    with the workspace's backtest and evaluate params."""
    predictions = {}
    for experiment in experiments:
        frame = read_predictions(experiment.rev)
        if frame is not None:
            predictions[experiment.name] = frame
    return out_of_sample(experiments, predictions, evidence_settings() if predictions else None)


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
    parser = OneLineParser(prog="python -m finseq.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--width", type=_columns, default=DEFAULT_WIDTH, help="columns (text table, >= 40)"
    )
    args = parser.parse_args(argv)
    try:
        experiments = parse_exp_show(exp_show())
        evidence = read_out_of_sample(experiments)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.markdown:
        sys.stdout.write(markdown_ranking(experiments, evidence))
    else:
        print(text_table(experiments, args.width, evidence))


if __name__ == "__main__":
    main()
