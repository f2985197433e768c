"""python -m finseq.experiments: the table of experiments that fits a terminal.

The fast tests feed it `dvc exp show --json` output of the shape DVC 3 writes; the real
command on a repository with a branch and two `dvc exp` runs is in tests/test_report.py.
"""

from __future__ import annotations

from finseq.experiments import (
    differing_params,
    markdown_ranking,
    parse_exp_show,
    ranked,
    text_table,
)


def revision(
    rev: str, name: str | None, model: str, seed: int, val_loss: float | None, skill: float = 0.01
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
                        "sharpe": 0.5,
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
    names = [experiment.name for experiment in parse_exp_show(exp_show_rows())]
    assert names == [
        "workspace",
        "main",
        "gru-exp",
        "seed-exp-with-a-very-long-name",
        "linear-branch",
    ]


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


def test_the_text_table_fits_its_width_and_keeps_the_deciding_columns():
    experiments = parse_exp_show(exp_show_rows())
    lines = text_table(experiments, 100).splitlines()
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
        "direction",
        "Sharpe",
    ]
    assert lines[-1] == "move = test.move_skill; direction = test.direction_skill"
    lines = lines[:-1]
    assert lines[1].split()[:4] == ["1", "gru-exp", "type=gru", "seed=42"]
    assert lines[1].split()[-3:] == ["+0.040", "-0.010", "+0.50"]
    assert "+0.010 [+0.000,+0.020]" in lines[1]
    assert lines[-1].split()[1:] == ["linear-branch", "type=linear", "seed=…", *["-"] * 5]
    # A long name is cut to fit; at 90 columns the params are cut too, the numbers never.
    assert "seed-exp-with-a…" in lines[4]
    narrow = text_table(experiments, 90).splitlines()[:-1]
    assert max(len(line) for line in narrow) <= 90
    assert [line.split()[-1] for line in narrow] == [line.split()[-1] for line in lines]
    assert narrow[-1].split()[2] == "type=li…"


def markdown_cells(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()]


def test_the_markdown_table_keeps_full_names():
    """Written by the package's one table writer (finseq.markdown): padded, aligned."""
    table = markdown_ranking(parse_exp_show(exp_show_rows()))
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
    ]
    assert cells[5][:4] == ["4", "seed-exp-with-a-very-long-name", "type=lstm seed=43", "1.0700"]
    assert set(cells[1][0]) == {"-"} and all(cell.endswith(":") for cell in cells[1][1:])
    assert len({len(line) for line in table.splitlines()}) == 1
