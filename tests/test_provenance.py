"""Every refusal of a stale or mismatched artefact, and which finseq versions read each
other's checkpoints: on small artefacts built in memory, no training and no DVC."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_params

import finseq
from finseq.artifacts import ARRAYS, PreparedData, WindowSets, check_windows, require_files
from finseq.errors import DataError
from finseq.provenance import MODEL_SOURCES, array_hash, file_md5, short, source_hash
from finseq.scoring import check_model
from finseq.versions import check_finseq_version, compatible_series, readable_version

WHERE = {"prepared_dir": "data/prepared", "windows_dir": "data/windows"}
LABEL = {"method": "triple_barrier", "horizon": 5, "threshold": 0.8, "vol_window": 20}
SPLIT = {"method": "walk_forward", "embargo": 5, "folds": 8}


def prepared(content_hash: str | None = "a" * 64, **meta) -> PreparedData:
    rows = 4
    return PreparedData(
        features=np.zeros((rows, 2)),
        labels=np.zeros(rows, dtype=np.int8),
        series=np.zeros(rows, dtype=np.int16),
        timestamps=np.arange(rows).astype("datetime64[D]").astype("datetime64[ns]"),
        forward_return=np.zeros(rows),
        next_return=np.zeros(rows),
        parts=np.zeros((1, rows), dtype=np.int8),
        samples=np.ones((1, rows), dtype=bool),
        meta={"content_hash": content_hash, "label": LABEL, "split": SPLIT, **meta},
    )


def window_sets(prepared_hash: str | None = "a" * 64, seq_len: int = 2) -> WindowSets:
    ends = {"f1": {"train": np.array([1, 2]), "val": np.array([3])}}
    return WindowSets(seq_len=seq_len, stride=1, ends=ends, prepared_hash=prepared_hash)


def checkpoint_of(data: PreparedData, windows: WindowSets, **params) -> dict:
    return {
        "provenance": {
            "finseq_version": finseq.__version__,
            "prepared_hash": data.content_hash,
            "windows_hash": windows.content_hash,
        },
        "params": {"label": dict(LABEL), "split": dict(SPLIT), **params},
    }


def test_matching_artefacts_pass_every_check():
    data, windows = prepared(), window_sets()
    check_windows(data, windows, **WHERE)
    check_model(checkpoint_of(data, windows), "models/folds/f1.pth", data, windows, **WHERE)


def test_prepared_data_without_a_content_hash_is_refused():
    with pytest.raises(DataError) as raised:
        check_windows(prepared(content_hash=None), window_sets(), **WHERE)
    assert str(raised.value) == (
        "data/prepared has no content hash (written by an older finseq); run `dvc repro`"
    )


def test_windows_of_other_prepared_data_are_refused_naming_both_hashes():
    with pytest.raises(DataError) as raised:
        check_windows(prepared(), window_sets(prepared_hash="b" * 64), **WHERE)
    assert str(raised.value) == (
        f"data/windows was built from other prepared data (it indexes {'b' * 12}, "
        f"data/prepared is {'a' * 12}); run `dvc repro`"
    )


def test_a_model_of_other_prepared_data_names_the_params_that_differ():
    data, windows = prepared(), window_sets()
    checkpoint = checkpoint_of(data, windows)
    checkpoint["provenance"]["prepared_hash"] = "c" * 64
    checkpoint["params"]["label"]["horizon"] = 3
    checkpoint["params"]["split"]["embargo"] = 4
    with pytest.raises(DataError) as raised:
        check_model(checkpoint, "models/folds/f1.pth", data, windows, **WHERE)
    assert str(raised.value) == (
        "models/folds/f1.pth was trained on other prepared data than data/prepared "
        "(label.horizon is 3 in the model, 5 in the data; split.embargo is 4 in the model, "
        "5 in the data); run `dvc repro`"
    )


def test_a_model_of_other_prepared_data_with_the_same_params_names_the_hashes():
    data, windows = prepared(), window_sets()
    checkpoint = checkpoint_of(data, windows)
    checkpoint["provenance"]["prepared_hash"] = "c" * 64
    with pytest.raises(DataError) as raised:
        check_model(checkpoint, "models/folds/f1.pth", data, windows, **WHERE)
    assert f"({'c' * 12} against {'a' * 12})" in str(raised.value)


def test_a_model_of_other_window_sets_is_refused():
    """The documented 'other window sets' refusal: same prepared data, windows cut for
    another seq_len."""
    data = prepared()
    trained_on = window_sets(seq_len=2)
    scored_on = window_sets(seq_len=3)
    assert trained_on.content_hash != scored_on.content_hash
    checkpoint = checkpoint_of(data, trained_on)
    with pytest.raises(DataError) as raised:
        check_model(checkpoint, "models/folds/f1.pth", data, scored_on, **WHERE)
    assert str(raised.value) == (
        "models/folds/f1.pth was trained on other window sets than data/windows "
        f"({short(trained_on.content_hash)} against {short(scored_on.content_hash)}); "
        "run `dvc repro`"
    )


@pytest.mark.parametrize(
    ("version", "numbers", "series"),
    [
        ("0.1.0", (0, 1, 0), (0, 1)),
        ("0.1.99", (0, 1, 99), (0, 1)),
        ("0.2", (0, 2), (0, 2)),
        ("0.10.1rc1", (0, 10, 1), (0, 10)),
        ("1.0.0", (1, 0, 0), (1,)),
        ("1.4.2", (1, 4, 2), (1,)),
        ("2.0.0.dev3", (2, 0, 0), (2,)),
        ("3", (3,), (3,)),
        ("dev", (), (0, 0)),
    ],
)
def test_release_numbers_and_the_series_that_reads_them(version, numbers, series):
    """Before 1.0 a minor release may change what a checkpoint means; from 1.0, a major."""
    assert readable_version(version) == numbers
    assert compatible_series(version) == series


@pytest.mark.parametrize(
    ("ours", "written_by", "reads"),
    [
        ("0.1.0", "0.1.7", True),
        ("0.1.0", "0.2.0", "0.1"),
        ("1.2.0", "1.9.3", True),
        ("1.2.0", "2.0.0", "1"),
        ("2.0.0", "1.9.9", "2"),
    ],
)
def test_a_checkpoint_is_read_only_by_its_own_series(monkeypatch, ours, written_by, reads):
    """`reads` is True, or the series the refusal says this release reads."""
    monkeypatch.setattr(finseq, "__version__", ours)
    checkpoint = {"provenance": {"finseq_version": written_by}}
    if reads is True:
        check_finseq_version(checkpoint, "model.pth")
        return
    with pytest.raises(DataError) as raised:
        check_finseq_version(checkpoint, "model.pth")
    assert str(raised.value) == (
        f"model.pth was written by finseq {written_by}; this is finseq {ours}, which reads "
        f"checkpoints of finseq {reads}.*; install finseq {written_by} or retrain the model"
    )


def test_a_missing_hash_is_shown_as_none():
    assert short(None) == "none"
    assert short("0123456789abcdef") == "0123456789ab"


def test_a_stage_missing_its_input_files_names_each_and_the_stage_to_run(tmp_path):
    (tmp_path / "features.npy").write_bytes(b"")
    require_files(tmp_path, ["features.npy"], "prepare")
    with pytest.raises(DataError) as raised:
        require_files(tmp_path, ["labels.npy", "features.npy", "meta.json"], "prepare")
    assert str(raised.value) == (
        f"{tmp_path}: missing labels.npy, meta.json; run `dvc repro prepare` "
        "(or `dvc checkout`) first"
    )


def test_a_files_md5_is_the_one_dvc_records_and_covers_every_block(tmp_path):
    """file_md5 of a committed output is dvc.lock's md5 for it; of a file of several read
    blocks, the md5 of all its bytes."""
    root = Path(__file__).parents[1]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    recorded = {out["path"]: out["md5"] for out in lock["stages"]["evaluate"]["outs"]}
    assert file_md5(root / "metrics/eval.json") == recorded["metrics/eval.json"]
    payload = np.random.default_rng(0).bytes(3 * (1 << 20) + 7)
    (tmp_path / "blob").write_bytes(payload)
    assert file_md5(tmp_path / "blob") == hashlib.md5(payload).hexdigest()


def test_an_array_hash_is_sha256_of_each_arrays_header_and_bytes_then_the_sorted_meta():
    """The content hash that names prepared data and window sets, computed by hand from its
    documented framing; a change to any byte, the first and the last included, or to the
    meta changes it, and the meta's key order does not."""
    features = np.arange(12, dtype=np.float64).reshape(3, 4)
    labels = np.array([1, -1, 0], dtype=np.int8)
    meta = {"seq_len": 8, "series_names": ["a", "b"]}
    by_hand = hashlib.sha256()
    for name, array in (("features", features), ("labels", labels)):
        by_hand.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        by_hand.update(array.tobytes())
    by_hand.update(json.dumps(meta, sort_keys=True).encode())
    arrays = [("features", features), ("labels", labels)]
    assert array_hash(arrays, meta) == by_hand.hexdigest()
    assert array_hash(arrays, dict(reversed(meta.items()))) == by_hand.hexdigest()
    assert array_hash(arrays, {**meta, "seq_len": 9}) != by_hand.hexdigest()
    for position in (0, features.nbytes - 1):
        changed = features.copy()
        changed.view(np.uint8).reshape(-1)[position] ^= 1
        assert array_hash([("features", changed), ("labels", labels)], meta) != array_hash(
            arrays, meta
        )


def test_the_source_hash_is_sha256_of_each_model_source_framed_by_its_name():
    """What a checkpoint records as the code that built it, computed by hand: each file of
    MODEL_SOURCES as `name NUL bytes NUL`, in order."""
    package = Path(finseq.__file__).parent
    by_hand = hashlib.sha256()
    for relative in MODEL_SOURCES:
        by_hand.update(relative.encode() + b"\0" + (package / relative).read_bytes() + b"\0")
    assert source_hash() == by_hand.hexdigest()


def test_evaluate_refuses_a_fold_file_holding_another_folds_models(monkeypatch, tmp_path):
    """final.pth copied over f1.pth trained on f1's test block: refused by the fold its
    checkpoint records, before any window is scored."""
    from types import SimpleNamespace

    from finseq import scoring

    checkpoint = {"training": {"fold": "final", "seed": 0}}
    monkeypatch.setattr(scoring, "load_ensemble", lambda path, device: ([], checkpoint))
    monkeypatch.setattr(scoring, "check_model", lambda *args, **kwargs: None)
    data = SimpleNamespace(meta={"evaluated_folds": ["f1"]})
    with pytest.raises(DataError) as raised:
        scoring.score_every_seed(
            tiny_params(), data, None, "cpu", tmp_path, prepared_dir="p", windows_dir="w"
        )
    assert str(raised.value) == (
        f"{tmp_path / 'f1.pth'} holds the models of fold 'final', not of fold 'f1': they may "
        "have trained on its test bars; run `dvc repro`"
    )


def honestly_hashed() -> PreparedData:
    """prepared() with the content hash prepare would give it."""
    data = prepared(content_hash=None)
    meta = {key: value for key, value in data.meta.items() if key != "content_hash"}
    arrays = ((name, getattr(data, name)) for name in ARRAYS)
    return dataclasses.replace(data, meta={**meta, "content_hash": array_hash(arrays, meta)})


@pytest.mark.parametrize("edit", ["meta.json", "features.npy", "labels.npy"])
def test_prepared_data_changed_after_prepare_wrote_it_is_refused(tmp_path, edit):
    """The content hash covers the arrays and meta.json and is checked on every load: an
    edited scaler mean or feature column would otherwise be scored without a word."""
    honestly_hashed().save(tmp_path / "prepared")
    assert PreparedData.load(tmp_path / "prepared").content_hash is not None
    target = tmp_path / "prepared" / edit
    if edit == "meta.json":
        meta = json.loads(target.read_text())
        meta["label"]["horizon"] = 6
        target.write_text(json.dumps(meta))
    else:
        array = np.load(target)
        array[1] = 1
        np.save(target, array)
    with pytest.raises(DataError) as raised:
        PreparedData.load(tmp_path / "prepared", mmap=True)
    assert str(raised.value) == (
        f"{tmp_path / 'prepared'} changed after prepare wrote it: its arrays and meta.json no "
        "longer give its content hash; run `dvc repro -f -s prepare` (or `dvc checkout`)"
    )


def test_an_unreadable_prepared_array_is_one_line(tmp_path):
    honestly_hashed().save(tmp_path / "prepared")
    (tmp_path / "prepared" / "labels.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(DataError, match=r"prepared: unreadable \(.*\); run `dvc repro -f -s"):
        PreparedData.load(tmp_path / "prepared")
