"""python -m finseq.experiments: the table of experiments that fits a terminal, with the
Model Confidence Set of out-of-sample loss and the deflated Sharpe ratio of the best.

The fast tests feed it `dvc exp show --json` output of the shape DVC 3 writes and generated
predictions tables; the real command on a repository with a branch and two `dvc exp` runs is
in tests/test_report.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from finseq.backtest import sharpe_ratio
from finseq.experiments import (
    Experiment,
    OutOfSample,
    differing_params,
    markdown_ranking,
    out_of_sample,
    parse_exp_show,
    ranked,
    summary_lines,
    text_table,
)
from finseq.selection import (
    deflated_sharpe,
    deflated_sharpe_of_best,
    expected_max_sharpe,
    model_confidence_set,
)
from finseq.verdicts import EvidenceSettings


def revision(
    rev: str,
    name: str | None,
    model: str,
    seed: int,
    val_loss: float | None,
    skill: float = 0.01,
    sharpe: float = 0.5,
) -> dict:
    metrics = (
        {}
        if val_loss is None
        else {
            "metrics/eval.json": {
                "data": {
                    "val": {"loss": val_loss},
                    "test": {
                        "skill": skill,
                        "skill_low": skill - 0.01,
                        "skill_high": skill + 0.01,
                        "move_skill": skill + 0.03,
                        "direction_skill": skill - 0.02,
                        "sharpe": sharpe,
                        "bars_per_year": 252.0,
                    },
                }
            }
        }
    )
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "params": {
                "params.yaml": {
                    "data": {
                        "model": {"type": model, "hidden_dim": 32},
                        "train": {"seed": seed, "epochs": 30},
                    }
                }
            },
            "metrics": metrics,
        },
        "error": None,
        "experiments": None,
    }


def exp_show_rows() -> list[dict]:
    main = revision("a" * 40, "main", "lstm", 42, 1.060)
    main["experiments"] = [
        {"revs": [revision("b" * 40, "gru-exp", "gru", 42, 1.050)], "name": "gru-exp"},
        {
            "revs": [revision("c" * 40, "seed-exp-with-a-very-long-name", "lstm", 43, 1.070)],
            "name": "seed-exp-with-a-very-long-name",
        },
    ]
    return [
        revision("workspace", None, "lstm", 42, 1.060),
        main,
        revision("d" * 40, "linear-branch", "linear", 42, None),
    ]


def test_every_revision_and_experiment_becomes_one_row():
    experiments = parse_exp_show(exp_show_rows())
    assert [experiment.name for experiment in experiments] == [
        "workspace",
        "main",
        "gru-exp",
        "seed-exp-with-a-very-long-name",
        "linear-branch",
    ]
    # The commit its predictions are read at; the workspace's are read from disk.
    assert [experiment.rev for experiment in experiments] == [None, *(c * 40 for c in "abcd")]


def test_only_the_params_that_differ_are_shown():
    assert differing_params(parse_exp_show(exp_show_rows())) == ["model.type", "train.seed"]


def test_rows_are_ranked_by_validation_loss_and_those_without_one_come_last():
    order = [experiment.name for experiment in ranked(parse_exp_show(exp_show_rows()))]
    assert order == [
        "gru-exp",
        "workspace",
        "main",
        "seed-exp-with-a-very-long-name",
        "linear-branch",
    ]


# One draw of generated data: the 90% MCS keeps every equal model in at least 90% of draws.
SETTINGS = EvidenceSettings(
    threshold=0.0,
    long_only=False,
    cost_bps=5,
    hold=1,
    sizing="sign",
    horizon=5,
    resamples=200,
    seed=0,
)


def sweep_predictions(
    edges: dict[str, float],
    n_dates: int = 1500,
    noise: float = 0.05,
    seed: int = 0,
    label_return: float = 0.0,
) -> dict[str, pd.DataFrame]:
    """One predictions table per experiment, over the same windows of two series: one model
    (random logits that know nothing of the labels) plus each experiment's own seed-like
    noise on its logits, plus `edge` on the logit of the true label: an experiment of edge
    > 0 puts more mass on the true label, a real edge. With `label_return`, each window's
    next return moves that much in its label's direction, so an edge is also a Sharpe."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=n_dates).strftime("%Y-%m-%dT%H:%M:%S")
    labels = rng.integers(-1, 2, size=(n_dates, 2))
    model = rng.normal(0, 0.3, size=(n_dates, 2, 3))
    next_return = rng.normal(0, 0.01, size=(n_dates, 2)) + label_return * labels
    tables = {}
    for number, (name, edge) in enumerate(edges.items()):
        own = np.random.default_rng([seed, number])
        logits = model + own.normal(0, noise, size=model.shape) + edge * np.eye(3)[labels + 1]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        tables[name] = pd.DataFrame(
            {
                "timestamp": np.repeat(dates, 2),
                "series": np.tile(["a", "b"], n_dates),
                "fold": "f1",
                "label": labels.ravel(),
                "p_down": probabilities[..., 0].ravel(),
                "p_flat": probabilities[..., 1].ravel(),
                "p_up": probabilities[..., 2].ravel(),
                "prior_p": 1 / 3,
                "majority": 0,
                "prior_down": 1 / 3,
                "prior_flat": 1 / 3,
                "prior_up": 1 / 3,
                "forward_return": 0.0,
                "next_return": next_return.ravel(),
            }
        )
    return tables


def test_a_planted_edge_is_alone_in_the_model_confidence_set():
    edges = {"planted": 0.05, **{f"seed-{n}": 0.0 for n in range(5)}}
    result = model_confidence_set(sweep_predictions(edges), SETTINGS)
    assert result.members == {"planted"}
    assert result.compared == tuple(edges)
    assert result.dates == result.all_dates == 1500
    assert result.block >= SETTINGS.horizon
    # Deterministic: the same sweep and seed give the same p-values.
    assert model_confidence_set(sweep_predictions(edges), SETTINGS).pvalues == result.pvalues


def test_a_sweep_of_seeds_alone_keeps_every_experiment_in_the_set():
    edges = {f"seed-{n}": 0.0 for n in range(6)}
    result = model_confidence_set(sweep_predictions(edges), SETTINGS)
    assert result.members == set(edges)


def sweep_with_sharpes(edges: dict[str, float]) -> tuple[list[Experiment], OutOfSample]:
    """Experiments of `sweep_predictions` whose returns follow their labels, each with the
    test.sharpe its own predictions give (no costs), judged as the table judges them."""
    settings = dataclasses.replace(SETTINGS, cost_bps=0)
    tables = sweep_predictions(edges, label_return=0.01)
    experiments = []
    for number, (name, table) in enumerate(tables.items()):
        totals = settings.totals(table)
        metrics = {
            "val.loss": 1.0 + number / 100,
            "test.sharpe": sharpe_ratio(totals.traded_returns(), totals.per_year),
            "test.bars_per_year": totals.per_year,
        }
        experiments.append(Experiment(name, {"train.seed": number}, metrics))
    return experiments, out_of_sample(experiments, tables, settings)


def test_a_planted_edge_alone_is_in_the_set_and_its_sharpe_survives_deflation():
    _, evidence = sweep_with_sharpes({"planted": 0.15, **{f"seed-{n}": 0.0 for n in range(5)}})
    assert evidence.confidence.members == {"planted"}
    assert evidence.deflated.name == "planted" and evidence.deflated.trials == 6
    assert evidence.deflated.value > 0.95


def test_in_a_sweep_of_seeds_the_best_sharpe_does_not_survive_deflation():
    experiments, evidence = sweep_with_sharpes({f"seed-{n}": 0.0 for n in range(6)})
    assert evidence.confidence.members == {e.name for e in experiments}
    assert evidence.deflated.trials == 6
    assert evidence.deflated.value < 0.95


def test_experiments_that_scored_different_windows_are_compared_on_the_common_dates():
    tables = sweep_predictions({"a": 0.0, "b": 0.0, "c": 0.0}, n_dates=300)
    tables["b"] = tables["b"].iloc[100:]  # its first 50 dates (2 series) missing
    result = model_confidence_set(tables, SETTINGS)
    assert (result.dates, result.all_dates) == (250, 300)
    assert result.members is not None and result.members <= {"a", "b", "c"}
    experiments = [Experiment(name, {}, {}) for name in tables]
    lines = summary_lines(experiments, out_of_sample(experiments, tables, SETTINGS))
    assert lines[0] == (
        "3 experiments ranked; 3 with predictions in the MCS comparison over 250 common dates "
        "(of 300 dates scored by any: they scored different windows, and only the dates "
        "common to all are compared)"
    )
    few = model_confidence_set({k: v.iloc[:40] for k, v in tables.items()}, SETTINGS)
    assert few.members is None  # 20 dates: too few for a block bootstrap


def test_experiments_of_the_same_predictions_are_one_model_to_the_mcs():
    """The workspace and the commit it is on, say: arch's MCS alone would divide their zero
    loss difference by a zero variance."""
    tables = sweep_predictions({"planted": 0.05, "seed-0": 0.0}, n_dates=300)
    tables["workspace"] = tables["seed-0"].copy()
    result = model_confidence_set(tables, SETTINGS)
    assert result.members == {"planted"}
    assert result.pvalues["workspace"] == result.pvalues["seed-0"]
    alone = model_confidence_set({"a": tables["seed-0"], "b": tables["workspace"]}, SETTINGS)
    assert alone.members == {"a", "b"}


def test_the_deflated_sharpe_is_bailey_and_lopez_de_prados_worked_example():
    """Bailey & López de Prado (2014), section 5: an annualised Sharpe ratio of 2.5 over
    T = 1250 daily returns of skewness -3 and kurtosis 10, the best of N = 100 trials whose
    annualised Sharpe ratios have variance 1/2. By hand, per day (250 a year):
    SR = 2.5 / sqrt(250) = 0.158114, V = 0.5 / 250 = 0.002;
    SR0 = sqrt(0.002) (0.422784 Φ⁻¹(0.99) + 0.577216 Φ⁻¹(1 - 1/(100 e)))
        = 0.044721 (0.422784 x 2.326348 + 0.577216 x 2.679290) = 0.044721 x 2.530102 = 0.113150;
    DSR = Φ((0.158114 - 0.113150) sqrt(1249) / sqrt(1 + 3 x 0.158114 + 9/4 x 0.025000))
        = Φ(0.044964 x 35.341194 / 1.237174) = Φ(1.284456) = 0.9005 (the paper: 0.9004)."""
    assert expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=1e-4)
    value = deflated_sharpe(2.5 / math.sqrt(250), 1250, -3.0, 10.0, 100, 0.5 / 250)
    assert value == pytest.approx(0.9004, abs=2e-4)
    # One trial, or trials that all had the same Sharpe ratio: nothing to deflate.
    assert expected_max_sharpe(1, 0.002) == expected_max_sharpe(10, 0.0) == 0.0


def test_more_trials_deflate_the_best_sharpe_more():
    values = [deflated_sharpe(0.08, 1000, 0.0, 3.0, trials, 0.001) for trials in (2, 10, 100)]
    assert values[0] > values[1] > values[2]
    # From the best's returns: SR, T, skewness and kurtosis of its own; N and V of the trials.
    returns = np.random.default_rng(0).normal(0.001, 0.01, 1000)
    few = deflated_sharpe_of_best("x", returns, {"x": 0.1, "y": 0.05})
    many = deflated_sharpe_of_best("x", returns, {"x": 0.1, **{f"y{n}": 0.05 for n in range(20)}})
    assert (few.trials, many.trials, few.periods) == (2, 21, 1000)
    assert few.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert many.threshold > 0 and many.value < deflated_sharpe(few.sharpe, 1000, 0, 3, 1, 0)


def sweep_rows() -> tuple[list, dict[str, pd.DataFrame]]:
    """exp show rows of the sweep's experiments (the planted one of highest Sharpe), and the
    predictions of all but `linear-branch`."""
    experiments = parse_exp_show(exp_show_rows())
    tables = sweep_predictions({"workspace": 0.0, "main": 0.0, "gru-exp": 0.05}, n_dates=300)
    tables["seed-exp-with-a-very-long-name"] = tables["main"]
    return experiments, tables


def test_the_text_table_fits_its_width_and_keeps_the_deciding_columns():
    experiments, tables = sweep_rows()
    evidence = out_of_sample(experiments, tables, SETTINGS)
    lines = text_table(experiments, 100, evidence).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == [
        "#",
        "experiment",
        "params",
        "val",
        "loss",
        "test",
        "skill",
        "[95%]",
        "move",
        "dir",
        "Sharpe",
        "MCS",
    ]
    table, under = lines[:6], lines[6:]
    assert under[0] == "move = test.move_skill; dir = test.direction_skill"
    assert under[1] == (
        "5 experiments ranked; 4 with predictions in the MCS comparison over 300 common dates"
    )
    assert table[1].split()[:4] == ["1", "gru-exp", "type=gru", "seed=42"]
    assert table[1].split()[-4:] == ["+0.040", "-0.010", "+0.50", "in"]
    assert "+0.010 [+0.000,+0.020]" in table[1]
    # No predictions file: "-".
    assert table[-1].split()[1:] == ["linear-branch", "type=linear", "see…", *["-"] * 6]
    assert [line.split()[-1] for line in table[1:]] == ["in", "out", "out", "out", "-"]
    # A long name is cut to fit; at 90 columns the params are cut too, the numbers never.
    assert "seed-exp-with-a…" in table[4]
    narrow = text_table(experiments, 90, evidence).splitlines()
    assert max(len(line) for line in narrow) <= 90
    assert [line.split()[-1] for line in narrow[:6]] == [line.split()[-1] for line in table]
    assert narrow[5].split()[2] == "type=…"


def test_the_deflated_sharpe_of_the_best_is_said_under_the_table():
    experiments, tables = sweep_rows()
    best = "gru-exp"
    rows = exp_show_rows()
    rows[1]["experiments"][0]["revs"][0] = revision("b" * 40, best, "gru", 42, 1.050, sharpe=1.2)
    experiments = parse_exp_show(rows)
    evidence = out_of_sample(experiments, tables, SETTINGS)
    assert evidence.deflated is not None and evidence.deflated.name == best
    assert evidence.deflated.trials == 4  # the experiments with a test Sharpe
    text = text_table(experiments, 100, evidence)
    line = f"deflated Sharpe of the best ({best}): {evidence.deflated.value:.2f} (probability"
    assert line in text.replace("\n", " ")
    assert "after N=4 trials; 300 periods)" in text.replace("\n", " ")
    # The best without a predictions file: said so.
    del tables[best]
    text = text_table(experiments, 100, out_of_sample(experiments, tables, SETTINGS))
    assert f"deflated Sharpe of the best ({best}): - (no metrics/predictions.csv" in text


def test_without_any_predictions_every_row_reads_dash_and_the_count_says_so():
    experiments = parse_exp_show(exp_show_rows())
    lines = text_table(experiments, 100).splitlines()
    assert [line.split()[-1] for line in lines[1:6]] == ["-"] * 5
    assert lines[7] == (
        "5 experiments ranked; none with metrics/predictions.csv: no MCS comparison"
    )


def markdown_cells(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()]


def test_the_markdown_table_keeps_full_names():
    """Written by the package's one table writer (finseq.markdown): padded, aligned."""
    experiments, tables = sweep_rows()
    text = markdown_ranking(experiments, out_of_sample(experiments, tables, SETTINGS))
    table, *under = text.split("\n\n")
    cells = markdown_cells(table)
    assert cells[0] == [
        "#",
        "experiment",
        "params",
        "val loss",
        "test skill [95%]",
        "move_skill",
        "direction_skill",
        "Sharpe",
        "MCS 90%",
    ]
    assert cells[5][:4] == ["4", "seed-exp-with-a-very-long-name", "type=lstm seed=43", "1.0700"]
    assert [row[-1] for row in cells[2:]] == ["in", "out", "out", "out", "-"]
    assert set(cells[1][0]) == {"-"} and all(cell.endswith(":") for cell in cells[1][1:])
    assert len({len(line) for line in table.splitlines()}) == 1
    assert under[0].startswith("5 experiments ranked; 4 with predictions in the MCS comparison")
    assert under[1].startswith("MCS 90%: in the 90% Model Confidence Set of out-of-sample")
    assert under[-1].startswith("deflated Sharpe of the best (")


def test_an_empty_table_and_a_bad_width_are_handled(capsys):
    """No experiment at all (a repository without commits) is a table of headers; a width
    below 40 is a usage mistake in one line."""
    from finseq.experiments import main, text_table

    assert text_table([], 100).splitlines()[0].startswith("#  experiment  params")
    with pytest.raises(SystemExit) as exited:
        main(["--width", "-1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: python -m finseq.experiments: argument --width: '-1' is not an integer >= 40 "
        "(see python -m finseq.experiments --help)\n"
    )
