"""finseq info: a model card in Markdown, from a checkpoint and (if it matches) its eval.json.

    finseq info [models/model.pth] [--metrics metrics/eval.json]

Everything but the out-of-sample section comes from the checkpoint alone, so the card of
a model file fetched by itself is complete. The out-of-sample figures are the evaluate
stage's; they are shown only when that eval.json names this model's md5 (`model_md5`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from finseq.checkpoint import load_checkpoint
from finseq.command import OneLineParser, run_stage
from finseq.errors import DataError, note
from finseq.paths import EVAL_METRICS, MODEL_FILE
from finseq.predict_inputs import CONVERGED_BARS
from finseq.provenance import file_md5, short
from finseq.versions import check_finseq_version


def _settings(section: dict) -> str:
    return ", ".join(f"`{key}` {value}" for key, value in section.items())


def _model_settings(model: dict) -> str:
    """The settings that shape this model: a tree model's model.lightgbm, a torch model's
    others."""
    if model["type"] == "lightgbm":
        return _settings({"type": "lightgbm", **model["lightgbm"]})
    return _settings({key: value for key, value in model.items() if key != "lightgbm"})


def _size(state_dict: dict) -> str:
    """'N weights', or a tree model's 'N trees' (its state is the booster's text)."""
    booster = state_dict.get("_extra_state")
    if isinstance(booster, str):
        return f"{sum(line.startswith('Tree=') for line in booster.splitlines()):,} trees"
    return f"{sum(value.numel() for value in state_dict.values()):,} weights"


def _number(value: float | None, spec: str) -> str:
    """A figure, or n/a where eval.json holds null (not a number)."""
    return "n/a" if value is None else format(value, spec)


def _interval(test: dict, name: str, digits: int = 3) -> str:
    value = test.get(name)
    if value is None:
        return "n/a"
    low, high = test.get(f"{name}_low"), test.get(f"{name}_high")
    shown = f"{value:+.{digits}f}"
    if low is None or high is None:
        return shown
    return f"{shown} [{low:+.{digits}f}, {high:+.{digits}f}]"


def metrics_section(metrics: dict | None, split_method: str) -> list[str]:
    lines = ["## Out-of-sample results", ""]
    if metrics is None:
        return [
            *lines,
            "Not shown: pass the eval.json of the run that wrote this model (`--metrics`).",
            "",
        ]
    test = metrics["test"]
    if split_method == "walk_forward":
        lines += [
            "Pooled walk-forward test blocks: each block scored by a model of these settings",
            "trained only on the bars before it. This file is the final refit on all the",
            "history, so no test bar is out of sample for its own weights.",
            "",
        ]
    else:
        lines += ["The holdout test split, scored by this model.", ""]
    seeds = metrics.get("seeds", {})
    lines += [
        "| figure | value [95% interval] |",
        "| --- | --- |",
        f"| windows | {test['samples']} |",
        f"| skill (1 - loss / prior loss) | {_interval(test, 'skill')} |",
        f"| accuracy, majority baseline | {_number(test['accuracy'], '.3f')}, "
        f"{_number(test['majority_accuracy'], '.3f')} |",
        f"| balanced accuracy | {_interval(test, 'balanced_accuracy')} |",
        f"| Sharpe after costs, buy-and-hold | {_interval(test, 'sharpe', 2)}, "
        f"{_number(test.get('buy_hold_sharpe'), '+.2f')} |",
        f"| annual return after costs | {_interval(test, 'annual_return')} |",
    ]
    if "skill_sd" in seeds:
        lines.append(
            f"| seed-to-seed sd of one seed's skill, Sharpe ({seeds['count']} seeds) | "
            f"{_number(seeds['skill_sd'], '.3f')}, {_number(seeds['sharpe_sd'], '.2f')} |"
        )
    return [*lines, ""]


def _further_seeds(checkpoint: dict) -> str:
    """The ensemble's other members, whose probabilities are averaged with the first's."""
    members = checkpoint.get("ensemble", [])
    if not members:
        return ""
    seeds = ", ".join(str(member["seed"]) for member in members)
    return (
        f"; with seeds {seeds} (best {', '.join(str(m['best_epoch']) for m in members)}), "
        f"an ensemble of {len(members) + 1} whose probabilities are averaged"
    )


def model_card(checkpoint: dict, model_md5: str, metrics: dict | None) -> str:
    """The card's Markdown text."""
    params, provenance, training = (
        checkpoint["params"],
        checkpoint["provenance"],
        checkpoint["training"],
    )
    model = params["model"]
    label = params["label"]
    split = params["split"]
    seq_len = checkpoint["seq_len"]
    written_with = f"torch {provenance['torch_version']}"
    if "lightgbm_version" in provenance:
        written_with += f" and LightGBM {provenance['lightgbm_version']}"
    lines = [
        f"# Model card: {model['type']} classifier ({short(model_md5)})",
        "",
        "## What it is",
        "",
        f"A {model['type']} model ({_model_settings(model)}; {_size(checkpoint['state_dict'])})"
        " that gives, for",
        "the last bar of a window of technical-indicator features, the probabilities of the",
        f"bar's label: {label['method']} over the next {label['horizon']} bars "
        f"(threshold {label['threshold']}, volatility window {label['vol_window']}):",
        "-1 down, 0 flat, 1 up.",
        "",
        "## Inputs",
        "",
        f"- {len(checkpoint['feature_names'])} features per bar, computed by finseq from OHLCV:",
        f"  {', '.join(checkpoint['feature_names'])}.",
        f"- Windows of {seq_len} bars; each feature z-scored with the training rows' mean and",
        "  standard deviation, stored in this file.",
        f"- At least {training.get('warmup_bars', 60) + seq_len} bars per file for one prediction; "
        f"{CONVERGED_BARS + seq_len} for",
        "  agreement with a longer history to 1e-6 (`finseq predict` notes shorter files).",
        f"- Bars spaced like its training data (median spacing {training.get('bar_interval')}).",
        "",
        "## Training",
        "",
        f"- Series: {', '.join(training.get('series', []))}.",
        f"- Fold `{training['fold']}`: train from "
        f"{training.get('train_start') or 'the first bar'}, validation from "
        f"{training['val_start']},",
        f"  last bar learned from or early-stopped on: {training['trained_until']}.",
        f"- Best {'boosting round' if model['type'] == 'lightgbm' else 'epoch'} "
        f"{training['best_epoch']} ({training['stop_reason']}), seed "
        f"{training['seed']}{_further_seeds(checkpoint)}.",
        f"- label: {_settings(label)}",
        f"- split: {_settings(split)}",
        f"- window: {_settings(params['window'])}",
        f"- train: {_settings(params['train'])}",
        "",
        *metrics_section(metrics, split["method"]),
        "## Not for",
        "",
        f"- Bars after {training['trained_until']} taken as tested: nothing after that date was",
        "  seen, and markets change; re-run the walk-forward evaluation on newer data first.",
        "- Bars of another frequency or a market unlike its series: the scaler and the weights",
        "  were fit on those; a new series is allowed, but its results are untested.",
        "- Position sizes or risk limits: it gives label probabilities, not expected returns;",
        "  the backtest above trades p_up - p_down beyond the backtest threshold (its sign or",
        "  its size, backtest.sizing), held backtest.hold bars, equal weight.",
        "- Any claim the intervals above do not support.",
        "",
        "## Provenance",
        "",
        f"- Model file md5 {model_md5} (as dvc.lock records `models/model.pth`).",
        f"- Written by finseq {provenance['finseq_version']} with {written_with}; model "
        f"source sha256 {short(provenance['source_hash'])}.",
        f"- Prepared data {short(provenance['prepared_hash'])}, window sets "
        f"{short(provenance['windows_hash'])}.",
        "",
    ]
    return "\n".join(lines)


def read_metrics(path: Path, model_md5: str, *, explicit: bool) -> dict | None:
    """The eval.json that belongs to this model, or None (a note says why when not asked for)."""
    if not path.is_file():
        if explicit:
            raise DataError(f"--metrics {path}: file not found")
        return None
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(metrics, dict) or "test" not in metrics:
        raise DataError(f"{path}: not an eval.json (no test metrics)")
    if metrics.get("model_md5") != model_md5:
        message = (
            f"{path} is the evaluation of another model (md5 {short(metrics.get('model_md5'))}, "
            f"this one {short(model_md5)})"
        )
        if explicit:
            raise DataError(f"{message}; pass the eval.json of this model's run")
        note(f"{message}; its figures are left out")
        return None
    return metrics


def run(argv: Sequence[str] | None = None, prog: str = "finseq info") -> None:
    parser = OneLineParser(prog=prog, description="Print a model card in Markdown.")
    parser.add_argument("model", nargs="?", type=Path, default=Path(MODEL_FILE))
    parser.add_argument("--metrics", type=Path, help=f"default: {EVAL_METRICS} if present")
    args = parser.parse_args(argv)
    _, checkpoint = load_checkpoint(args.model)
    check_finseq_version(checkpoint, args.model)
    model_md5 = file_md5(args.model)
    metrics = read_metrics(
        args.metrics or Path(EVAL_METRICS), model_md5, explicit=args.metrics is not None
    )
    print(model_card(checkpoint, model_md5, metrics))


def main(argv: Sequence[str] | None = None) -> None:
    run_stage(lambda: run(argv), interrupted="nothing was printed")
