"""The model registry, weight initialisation and the safe checkpoint round trip."""

import dataclasses

import pytest
import torch
from torch import nn

from finseq.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from finseq.models import MODELS, build_model
from finseq.params import ModelConfig

CONFIG = ModelConfig(type="lstm", hidden_dim=16, num_layers=2, dropout=0.1)


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_every_model_maps_windows_to_three_logits(model_type):
    model = build_model(dataclasses.replace(CONFIG, type=model_type), n_features=5)
    logits = model(torch.randn(7, 12, 5))
    assert logits.shape == (7, 3)


def test_linear_baseline_sees_only_the_last_bar():
    model = build_model(dataclasses.replace(CONFIG, type="linear"), n_features=4).eval()
    windows = torch.randn(3, 6, 4)
    changed = windows.clone()
    changed[:, :-1] = torch.randn(3, 5, 4)
    assert torch.equal(model(windows), model(changed))


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
def test_recurrent_weights_are_orthogonal_per_gate_and_linear_biases_zero(model_type):
    model = build_model(dataclasses.replace(CONFIG, type=model_type), n_features=5)
    recurrent = model.recurrent
    gates = 4 if model_type == "lstm" else 3
    for layer in range(recurrent.num_layers):
        weight = getattr(recurrent, f"weight_hh_l{layer}").detach()
        for gate in weight.chunk(gates, dim=0):
            assert torch.allclose(gate @ gate.T, torch.eye(gate.shape[0]), atol=1e-5)
    assert torch.count_nonzero(model.head.bias) == 0
    if model_type == "lstm":
        forget_bias = recurrent.bias_ih_l0.detach()[16:32]
        assert torch.all(forget_bias == 1.0)


def test_same_seed_builds_the_same_weights():
    torch.manual_seed(5)
    first = build_model(CONFIG, 5).state_dict()
    torch.manual_seed(5)
    second = build_model(CONFIG, 5).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_checkpoint_round_trip_rebuilds_an_identical_model_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(CONFIG, type="gru"), n_features=3)
    checkpoint = make_checkpoint(
        model,
        dataclasses.replace(CONFIG, type="gru"),
        seq_len=12,
        feature_names=["a", "b", "c"],
        scaler_mean=[0.0, 1.0, 2.0],
        scaler_std=[1.0, 2.0, 3.0],
        training={"best_epoch": 3, "stop_reason": "early_stopping", "fold": "final", "seed": 0},
        params={"window": {"seq_len": 12, "stride": 1}},
        provenance={"finseq_version": "0.1.0"},
    )
    path = tmp_path / "model.pth"
    save_checkpoint(checkpoint, path)
    raw = torch.load(path, weights_only=True)
    assert raw["feature_names"] == ["a", "b", "c"]
    assert raw["class_labels"] == [-1, 0, 1]
    assert raw["seq_len"] == 12
    assert torch.equal(raw["scaler_std"], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded.recurrent, nn.GRU)
    windows = torch.randn(4, 12, 3)
    model.eval()
    assert torch.equal(model(windows), loaded(windows))
