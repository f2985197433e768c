"""model.type lightgbm: LightGBM's trees on the last bar of each window, trained per fold like
every model, the same bytes from the same seed, early-stopped on val alone, saved as text in
a weights_only checkpoint, and scored by evaluate and finseq predict through one forward.

The fast tests share one tiny tree model per module, trained in-process on generated series;
a fit takes well under a second.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import reproduced_project, tiny_params_dict

from finseq import pipeline
from finseq import predict as predict_module
from finseq.artifacts import PreparedData, WindowSets
from finseq.calibration import (
    DEFAULT_CALIBRATION,
    calibrated_probabilities,
    checkpoint_calibration,
)
from finseq.card import model_card
from finseq.checkpoint import load_checkpoint, save_checkpoint
from finseq.distributed import Ranks
from finseq.errors import ConfigError
from finseq.folds import train_models
from finseq.models import LastBarTrees, build_model, predict_logits
from finseq.params import LightGBMConfig, Params, parse_params
from finseq.paths import FOLD_MODELS_DIR, MODEL_FILE, TRAIN_LIVE_DIR
from finseq.runtime import set_numerics
from finseq.saving import fold_checkpoint
from finseq.scoring import evaluate_folds
from finseq.split import TEST
from finseq.synthetic import write_panel
from finseq.trees import fit_trees, train_trees

CPU = torch.device("cpu")
# Small trees for a few thousand windows: every fit of this module takes well under a second.
TREES = {
    "num_leaves": 7,
    "min_data_in_leaf": 20,
    "learning_rate": 0.1,
    "max_rounds": 200,
    "early_stopping_rounds": 10,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
}


def tree_params(**overrides: dict) -> dict:
    """The tiny params with model.type lightgbm and TREES, then `overrides` by section."""
    raw = tiny_params_dict(model={"type": "lightgbm", "lightgbm": dict(TREES)})
    for section, values in overrides.items():
        raw[section].update(values)
    return raw


@dataclasses.dataclass(frozen=True)
class Trained:
    params: Params
    data: PreparedData
    windows: WindowSets
    raw: tuple[Path, ...]
    model: LastBarTrees
    model_file: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The final fold's tree model of two generated series (a planted drift), saved, under
    the numerics every stage sets (torch's one-off import of them is paid here)."""
    set_numerics(CPU)
    directory = tmp_path_factory.mktemp("trees")
    raw = tuple(write_panel(directory / "raw", n_series=2, n_bars=1500, seed=7, drift=0.002))
    params = parse_params(tree_params(data={"files": [str(path) for path in raw], "workers": 1}))
    data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    fold = data.meta["model_fold"]
    model, result = pipeline.train_fold(params, data, windows, fold, CPU)
    model_file = directory / "model.pth"
    save_checkpoint(fold_checkpoint(model, result, data, windows, fold, params), model_file)
    return Trained(params, data, windows, raw, model, model_file)


def planted_arrays(rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five float32 features and -1/0/1 labels that the first two decide, with noise."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, 5)).astype(np.float32)
    score = features[:, 0] + 0.5 * features[:, 1] + rng.standard_normal(rows)
    labels = np.where(score > 0.5, 1, np.where(score < -0.5, -1, 0)).astype(np.int8)
    return features, labels


TRAIN_ENDS, VAL_ENDS = np.arange(0, 2000), np.arange(2000, 2500)
NAMES = [f"x{index}" for index in range(5)]


def fit_planted(labels: np.ndarray | None = None, seed: int = 42, features=None):
    planted_features, planted_labels = planted_arrays()
    return fit_trees(
        planted_features if features is None else features,
        planted_labels if labels is None else labels,
        TRAIN_ENDS,
        VAL_ENDS,
        LightGBMConfig(**TREES),
        seed,
        NAMES,
    )


def log_loss(probabilities: np.ndarray, classes: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(len(classes)), classes])))


# --- determinism and seeds ------------------------------------------------------------------


def test_two_fits_grow_the_same_trees_and_the_next_seed_other_trees():
    first, _ = fit_planted()
    second, _ = fit_planted()
    next_seed, _ = fit_planted(seed=43)
    assert first == second
    assert next_seed != first


def test_the_same_params_and_data_write_the_same_checkpoint_bytes(trained, tmp_path):
    fold = trained.data.meta["model_fold"]
    model, result = pipeline.train_fold(trained.params, trained.data, trained.windows, fold, CPU)
    again = tmp_path / "again.pth"
    checkpoint = fold_checkpoint(model, result, trained.data, trained.windows, fold, trained.params)
    save_checkpoint(checkpoint, again)
    assert again.read_bytes() == trained.model_file.read_bytes()


# --- early stopping on val, never test ------------------------------------------------------


def test_the_kept_round_is_the_one_of_lowest_validation_loss():
    text, result = fit_planted()
    val_losses = [epoch.val_loss for epoch in result.history]
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == result.best_epoch + TREES["early_stopping_rounds"]
    booster = lightgbm.Booster(model_str=text)
    assert booster.num_trees() == 3 * result.best_epoch  # one tree per class and round
    features, labels = planted_arrays()
    probabilities = booster.predict(features[VAL_ENDS])
    assert log_loss(probabilities, labels[VAL_ENDS] + 1) == pytest.approx(result.best_val_loss)


def test_a_planted_change_of_the_val_labels_moves_the_kept_round():
    """Val labels reversed: the trees learn the same training rows round by round, but more
    of them fit val worse, so early stopping keeps an earlier round."""
    _, honest = fit_planted()
    _, labels = planted_arrays()
    reversed_val = labels.copy()
    reversed_val[VAL_ENDS] = -labels[VAL_ENDS]
    _, planted = fit_planted(reversed_val)
    assert planted.best_epoch < honest.best_epoch
    shared = min(planted.epochs_run, honest.epochs_run)
    assert [e.train_loss for e in planted.history[:shared]] == [
        e.train_loss for e in honest.history[:shared]
    ]


def test_rows_outside_train_and_val_change_nothing_and_val_labels_do(trained):
    """Every test row of fold f2 replaced (features and labels): the same trees. The labels of
    its val windows changed: other trees (the control)."""
    data, fold = trained.data, "f2"
    test_rows = trained.data.parts[data.fold_index(fold)] == TEST
    assert test_rows.any()
    features, labels = data.features.copy(), data.labels.copy()
    features[test_rows] = 1e3
    labels[test_rows] = 1
    changed_test = dataclasses.replace(data, features=features, labels=labels)
    val_changed = labels.copy()
    val_changed[trained.windows.ends[fold]["val"]] *= -1
    changed_val = dataclasses.replace(data, labels=val_changed)

    def trees(prepared: PreparedData) -> str:
        model, _ = pipeline.train_fold(trained.params, prepared, trained.windows, fold, CPU)
        return model.booster_text

    honest = trees(data)
    assert trees(changed_test) == honest
    assert trees(changed_val) != honest


# --- the checkpoint and the one forward -------------------------------------------------------


def test_the_checkpoint_holds_the_booster_text_and_loads_with_weights_only(trained):
    raw = torch.load(trained.model_file, weights_only=True)
    assert raw["state_dict"] == {"_extra_state": trained.model.booster_text}
    assert isinstance(raw["state_dict"]["_extra_state"], str)
    assert raw["state_dict"]["_extra_state"].startswith("tree\n")
    assert raw["model_config"]["type"] == "lightgbm"
    assert raw["model_config"]["lightgbm"] == TREES
    assert raw["provenance"]["lightgbm_version"] == lightgbm.__version__
    loaded, _ = load_checkpoint(trained.model_file)
    assert isinstance(loaded, LastBarTrees)
    windows = torch.randn(9, trained.windows.seq_len, trained.data.features.shape[1])
    assert torch.equal(loaded(windows), trained.model(windows))


def test_logits_are_the_boosters_raw_scores_of_each_windows_last_bar(trained):
    """predict_logits over window ends against LightGBM's own predict on the end rows, read
    from the booster text by LightGBM alone and with its default threads."""
    fold = trained.data.meta["model_fold"]
    features = trained.data.scaled_features(fold)
    ends = np.concatenate([trained.windows.ends[fold]["train"], trained.windows.ends[fold]["val"]])
    loaded, checkpoint = load_checkpoint(trained.model_file)
    booster = lightgbm.Booster(model_str=checkpoint["state_dict"]["_extra_state"])
    expected = booster.predict(features[ends], raw_score=True).astype(np.float32)
    logits = predict_logits(
        loaded, torch.as_tensor(features), torch.as_tensor(ends), trained.windows.seq_len, 100
    )
    assert logits.dtype == torch.float32
    assert np.array_equal(logits.numpy(), expected)
    assert len(np.unique(expected, axis=0)) > 10  # the trees do split


def test_the_trees_read_the_last_bar_only(trained):
    windows = torch.randn(5, 8, trained.data.features.shape[1])
    changed = windows.clone()
    changed[:, :-1] = torch.randn(5, 7, trained.data.features.shape[1])
    assert torch.equal(trained.model(windows), trained.model(changed))
    changed[:, -1, :] += 1.0
    assert not torch.equal(trained.model(windows), trained.model(changed))


def test_an_untrained_tree_model_scores_zero_and_a_booster_of_other_features_is_refused(trained):
    config = trained.params.model
    assert torch.equal(build_model(config, 4)(torch.randn(2, 3, 4)), torch.zeros(2, 3))
    checkpoint = torch.load(trained.model_file, weights_only=True)
    wrong = build_model(config, trained.data.features.shape[1] + 1)
    count = trained.data.features.shape[1]
    with pytest.raises(
        RuntimeError, match=f"the booster reads {count} features, the model {count + 1}"
    ):
        wrong.load_state_dict(checkpoint["state_dict"])
    with pytest.raises(RuntimeError, match="not a LightGBM model"):
        wrong.load_state_dict({"_extra_state": "tree\nnot a model"})


def test_the_model_card_names_the_trees_and_lightgbm(trained):
    card = model_card(torch.load(trained.model_file, weights_only=True), "abc123", None)
    assert "A lightgbm model (`type` lightgbm, `num_leaves` 7," in card
    trees = sum(line.startswith("Tree=") for line in trained.model.booster_text.splitlines())
    assert f"; {trees} trees)" in card and "hidden_dim" not in card.split("## Inputs")[0]
    assert "Best boosting round" in card and f"LightGBM {lightgbm.__version__}" in card


# --- finseq predict: no skew ------------------------------------------------------------------


def test_finseq_predict_gives_the_pipelines_probabilities_bit_for_bit(trained, tmp_path):
    """Fold f3's model on the raw CSVs through finseq predict, against the pipeline's own
    scoring (score_fold, as evaluate runs it) of f3's val and test windows, matched by series
    and timestamp."""
    data, fold = trained.data, "f3"
    model, result = pipeline.train_fold(trained.params, data, trained.windows, fold, CPU)
    model_file = tmp_path / "f3.pth"
    checkpoint = fold_checkpoint(model, result, data, trained.windows, fold, trained.params)
    save_checkpoint(checkpoint, model_file)
    out = tmp_path / "p.csv"
    predict_module.run(
        ["--model", str(model_file), "--all", "--out", str(out), *map(str, trained.raw)]
    )
    predicted = pd.read_csv(out, parse_dates=["timestamp"])
    loaded, saved = load_checkpoint(model_file)
    scores = pipeline.score_fold(trained.params, loaded, data, trained.windows, fold, CPU)
    # Both calibrated by the checkpoint's own fit of finseq predict's default method.
    calibration = checkpoint_calibration(saved, model_file, DEFAULT_CALIBRATION)
    for part in ("val", "test"):
        expected = calibrated_probabilities(calibration, scores.logits[part]).astype(np.float32)
        ends = scores.ends[part]
        keys = pd.DataFrame(
            {
                "series": np.asarray(data.meta["series_names"])[data.series[ends]],
                "timestamp": data.timestamps[ends],
            }
        )
        matched = keys.merge(predicted, on=["series", "timestamp"], how="left", validate="1:1")
        probabilities = matched[["p_down", "p_flat", "p_up"]].to_numpy().astype(np.float32)
        assert len(ends) > 100
        assert np.array_equal(probabilities, expected), part


# --- the seed ensemble: what evaluate scores and finseq predict loads -------------------------


def test_each_fold_is_its_seed_ensemble_in_evaluate_and_in_finseq_predict(trained, tmp_path):
    """train.seeds = 2: every fold's file holds both seeds' models (no per-seed file is left)
    and models/model.pth is the final fold's; evaluate's predictions are the ensemble's
    (finseq predict on a fold's file gives them again), and each seed's own figures differ
    from them, the ensemble's loss no higher than the mean of the seeds' (log loss is
    convex)."""
    train = dataclasses.replace(trained.params.train, seeds=2, fold_workers=1)
    params = dataclasses.replace(trained.params, train=train)
    train_models(params, trained.data, trained.windows, CPU, root=tmp_path)
    folds = tmp_path / FOLD_MODELS_DIR
    assert sorted(path.name for path in folds.iterdir()) == [
        f"{fold}.pth" for fold in sorted(trained.data.fold_names)
    ]
    for path in folds.iterdir():
        checkpoint = torch.load(path, weights_only=True)
        assert [member["seed"] for member in checkpoint["ensemble"]] == [train.seed + 1]
        assert checkpoint["ensemble"][0]["state_dict"] != checkpoint["state_dict"]
    assert (tmp_path / MODEL_FILE).read_bytes() == (folds / "final.pth").read_bytes()

    evaluation = evaluate_folds(
        params, trained.data, trained.windows, CPU, folds, prepared_dir="p", windows_dir="w"
    )
    recorded = pd.read_csv(io.StringIO(evaluation.predictions_csv), parse_dates=["timestamp"])
    out = tmp_path / "f3.csv"
    predict_module.run(
        ["--model", str(folds / "f3.pth"), "--all", "--out", str(out), *map(str, trained.raw)]
    )
    predicted = pd.read_csv(out, parse_dates=["timestamp"])
    f3 = recorded[recorded["fold"] == "f3"]
    matched = f3.merge(predicted, on=["series", "timestamp"], suffixes=("", "_predict"))
    assert len(matched) == len(f3) > 100
    for column in ("p_down", "p_flat", "p_up"):  # recorded in 8 significant digits
        np.testing.assert_allclose(matched[column], matched[f"{column}_predict"], rtol=1e-7)

    metrics = evaluation.metrics
    seeds = [metrics["seeds"][f"s{train.seed}"], metrics["seeds"][f"s{train.seed + 1}"]]
    assert all(seed["loss"] != metrics["test"]["loss"] for seed in seeds)
    assert metrics["test"]["loss"] <= np.mean([seed["loss"] for seed in seeds]) + 1e-7
    assert metrics["seeds"]["loss_ensemble_sd"] == pytest.approx(
        metrics["seeds"]["loss_sd"] / np.sqrt(2)
    )


# --- the train stage: curves, summary, bytes ------------------------------------------------


def test_the_train_stage_logs_rounds_as_epochs_and_writes_the_same_bytes_twice(trained, tmp_path):
    """train_models, DVCLive included, in this process and then in two forked fold workers
    (after this process ran LightGBM): models/model.pth is the final fold's file and the same
    bytes; metrics.json has the keys a torch run has, in rounds."""
    for root, workers in ((tmp_path / "a", 1), (tmp_path / "b", 2)):
        train = dataclasses.replace(trained.params.train, fold_workers=workers)
        params = dataclasses.replace(trained.params, train=train)
        train_models(params, trained.data, trained.windows, CPU, root=root)
    model = (tmp_path / "a" / MODEL_FILE).read_bytes()
    assert model == (tmp_path / "b" / MODEL_FILE).read_bytes()
    assert model == (tmp_path / "a" / FOLD_MODELS_DIR / "final.pth").read_bytes()
    summary = json.loads((tmp_path / "a" / TRAIN_LIVE_DIR / "metrics.json").read_text())
    assert set(summary) == {
        "best_epoch",
        "epochs_run",
        "stopped_early",
        "train",
        "val",
        "learning_rate",
        "folds",
    }
    assert summary["epochs_run"] == summary["best_epoch"] + TREES["early_stopping_rounds"]
    assert summary["learning_rate"] == TREES["learning_rate"]
    assert set(summary["folds"]) == {"f1", "f2", "f3"}
    curves = pd.read_csv(tmp_path / "a" / TRAIN_LIVE_DIR / "folds" / "curves.tsv", sep="\t")
    final = curves[curves["fold"] == "final"]
    assert final["step"].tolist() == list(range(1, summary["epochs_run"] + 1))
    assert final["val_loss"].min() == pytest.approx(summary["val"]["loss"])


# --- parameters -----------------------------------------------------------------------------


REFUSED = [
    pytest.param(
        {"train": {"processes": 2}},
        "train.processes = 2 with model.type = 'lightgbm': trees train in one process",
        id="processes",
    ),
    pytest.param(
        {"train": {"device": "cuda"}},
        "train.device = 'cuda' with model.type = 'lightgbm': LightGBM trains on the CPU",
        id="cuda",
    ),
    pytest.param(
        {
            "train": {"seeds": 3},
            "model": {"lightgbm": {**TREES, "feature_fraction": 1.0, "bagging_fraction": 1.0}},
        },
        "train.seeds = 3 with model.lightgbm.feature_fraction and bagging_fraction both 1",
        id="seeds-without-draws",
    ),
    pytest.param(
        {"model": {"lightgbm": None}},
        "model.lightgbm is missing from params.yaml: model.type = 'lightgbm' reads it",
        id="section-missing",
    ),
    pytest.param(
        {"model": {"lightgbm": {**TREES, "num_leaves": 1}}},
        "model.lightgbm.num_leaves = 1 is not allowed: expected >= 2 and <= 131072",
        id="one-leaf",
    ),
    pytest.param(
        {"model": {"lightgbm": {**TREES, "max_depth": 4}}},
        "model.lightgbm.max_depth = 4 is not a known parameter; model.lightgbm takes: "
        "num_leaves, min_data_in_leaf, learning_rate, max_rounds, early_stopping_rounds, "
        "feature_fraction, bagging_fraction",
        id="unknown-key",
    ),
    pytest.param(
        {"model": {"lightgbm": {**TREES, "max_rounds": 50.5}}},
        "model.lightgbm.max_rounds = 50.5 has the wrong type: expected an integer",
        id="float-rounds",
    ),
    pytest.param(
        {"model": {"lightgbm": 15}},
        "model.lightgbm must be a mapping of keys to values, got 15",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), REFUSED)
def test_bad_tree_settings_are_refused_with_one_line_naming_the_keys(overrides, expected):
    with pytest.raises(ConfigError) as raised:
        parse_params(tree_params(**overrides))
    assert str(raised.value).startswith(expected)
    assert "\n" not in str(raised.value)


def test_each_bound_of_model_lightgbm_is_named_when_a_value_breaks_it():
    checked = 0
    for name, info in LightGBMConfig.__pydantic_fields__.items():
        bounds = {
            symbol: getattr(item, attribute)
            for item in info.metadata
            for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if hasattr(item, attribute)
        }
        phrase = " and ".join(f"{symbol} {value}" for symbol, value in bounds.items())
        for symbol, value in bounds.items():
            step = 1 if isinstance(value, int) else 0.5
            bad = value if symbol in (">", "<") else value + (step if "<" in symbol else -step)
            raw = tree_params(model={"lightgbm": {**TREES, name: bad}})
            with pytest.raises(ConfigError) as raised:
                parse_params(raw)
            assert str(raised.value) == (
                f"model.lightgbm.{name} = {bad!r} is not allowed: expected {phrase}"
            )
            checked += 1
    assert checked == 12


def test_torch_models_need_no_tree_section_and_a_cpu_or_auto_device_is_fine():
    raw = tiny_params_dict()
    del raw["model"]["lightgbm"]
    assert parse_params(raw).model.lightgbm is None
    for device in ("cpu", "auto"):
        assert parse_params(tree_params(train={"device": device})).model.type == "lightgbm"


def test_trees_refuse_to_train_under_torchrun(trained):
    ranks = Ranks(rank=0, world_size=2, local_rank=0, local_world_size=2)
    with pytest.raises(ConfigError, match=r"^model.type = 'lightgbm' under torchrun \(2 ranks\)"):
        train_trees(trained.data, trained.windows, "f1", trained.params.model, 42, ranks=ranks)


# --- end to end: a DVC experiment, finseq predict on its model, the report's verdicts ------


@pytest.mark.slow
def test_dvc_exp_run_lightgbm_runs_end_to_end_and_the_report_gives_its_verdicts(
    reproduced_template, tmp_path
):
    """`dvc exp run -S model.type=lightgbm` on the tiny project: its model.pth is scored by
    finseq predict, and the report compares it to the committed LSTM with a verdict for
    every figure, the move and direction parts included."""
    project = reproduced_project(reproduced_template, tmp_path / "repo")
    output = project.run("dvc", "exp", "run", "-n", "trees", "-S", "model.type=lightgbm").stdout
    assert "Running stage 'train'" in output
    checkpoint = torch.load(project.path / MODEL_FILE, weights_only=True)
    assert checkpoint["model_config"]["type"] == "lightgbm"
    raw = sorted(str(path) for path in (project.path / "data" / "raw").glob("*.csv"))
    predicted = project.run(sys.executable, "-m", "finseq.predict", *raw).stdout
    assert "calibration direction" in predicted.splitlines()[0]
    report = project.run(
        sys.executable, "-m", "finseq.report", "--base", "main", "--target", "trees"
    ).stdout
    verdicts = {
        cells[0]: cells[5]
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()
        )
        if len(cells) == 6 and cells[5].startswith("**")
    }
    assert set(verdicts) == {
        "skill",
        "move_skill",
        "direction_skill",
        "loss",
        "accuracy",
        "sharpe",
    }
    assert "## What the model knows" in report
