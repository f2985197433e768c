"""model.type → nn.Module: a small registry of the classifiers the pipeline trains, and
inference over window ends (`predict_logits`), shared by training, evaluate and predict.

Every model maps a batch of windows (batch, seq_len, features) to logits over the
three classes (-1, 0, 1), the gradient-boosted trees included (LastBarTrees). Training and
loading a checkpoint both build models here, from the same config, so a saved state_dict
always finds the module it fits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from finseq.labels import NUM_CLASSES
from finseq.params import ModelConfig
from finseq.runtime import autocast
from finseq.windows import gather_windows, window_offsets


class RecurrentClassifier(nn.Module):
    """LSTM or GRU over the window; the last step's hidden state feeds a linear head."""

    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU], n_features: int, config: ModelConfig):
        super().__init__()
        self.recurrent = cell(
            input_size=n_features,
            hidden_size=config.hidden_dim,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim, NUM_CLASSES)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.recurrent(windows)
        return self.head(self.dropout(outputs[:, -1]))


class LastBarLinear(nn.Module):
    """Multinomial logistic regression on the last bar's features: the no-memory baseline."""

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        self.head = nn.Linear(n_features, NUM_CLASSES)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.head(windows[:, -1])


class LastBarTrees(nn.Module):
    """Gradient-boosted trees (LightGBM) on the last bar's features, behind the forward every
    model has: windows in, the booster's raw scores out as float32 logits, so that training's
    validation, evaluate and finseq predict score it by the same predict_logits.

    The booster's text model is the module's extra state: its state_dict, and so its
    checkpoint, holds one plain str, which loads with weights_only=True. Scores are computed
    in one thread: a row's score is the same with any number, and a process that has run
    LightGBM's OpenMP threads can hang in the workers it forks later (LightGBM's FAQ).
    """

    def __init__(self, n_features: int, config: ModelConfig):
        super().__init__()
        self.n_features = n_features
        self.booster_text = ""
        self.booster = None

    def get_extra_state(self) -> str:
        return self.booster_text

    def set_extra_state(self, state: object) -> None:
        """Loads the booster from its text (LightGBM is imported only for a tree model)."""
        import lightgbm

        if not isinstance(state, str):
            raise RuntimeError(f"the booster is a {type(state).__name__}, not LightGBM text")
        try:
            booster = lightgbm.Booster(model_str=state)
        except lightgbm.basic.LightGBMError as exc:
            raise RuntimeError(f"not a LightGBM model ({exc})") from None
        if booster.num_feature() != self.n_features:
            raise RuntimeError(
                f"the booster reads {booster.num_feature()} features, the model {self.n_features}"
            )
        self.booster, self.booster_text = booster, state

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.booster is None:  # an ensemble of no trees: every raw score is 0
            return torch.zeros(len(windows), NUM_CLASSES, device=windows.device)
        last_bars = np.ascontiguousarray(windows[:, -1].detach().float().cpu().numpy())
        scores = self.booster.predict(last_bars, raw_score=True, num_threads=1)
        return torch.from_numpy(scores).to(device=windows.device, dtype=torch.float32)


MODELS: dict[str, Callable[[int, ModelConfig], nn.Module]] = {
    "lstm": lambda n_features, config: RecurrentClassifier(nn.LSTM, n_features, config),
    "gru": lambda n_features, config: RecurrentClassifier(nn.GRU, n_features, config),
    "linear": LastBarLinear,
    "lightgbm": LastBarTrees,
}


def init_weights(model: nn.Module) -> None:
    """Orthogonal hidden-to-hidden weights, Xavier input and linear weights, zero biases.

    Orthogonal hidden-to-hidden matrices keep gradients from exploding or vanishing
    through time at the start of training. The LSTM forget-gate bias starts at 1 so
    the cell remembers by default (Jozefowicz et al., 2015).
    """
    for module in model.modules():
        if isinstance(module, (nn.LSTM, nn.GRU)):
            gates = 4 if isinstance(module, nn.LSTM) else 3
            for name, parameter in module.named_parameters():
                if name.startswith("weight_hh"):
                    for gate in parameter.data.chunk(gates, dim=0):
                        nn.init.orthogonal_(gate)
                elif name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(parameter.data)
                elif name.startswith("bias"):
                    nn.init.zeros_(parameter.data)
                    if isinstance(module, nn.LSTM) and name.startswith("bias_ih"):
                        hidden = module.hidden_size
                        parameter.data[hidden : 2 * hidden] = 1.0
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(config: ModelConfig, n_features: int) -> nn.Module:
    """A freshly initialised model of `config.type`; seed torch first for reproducible weights."""
    model = MODELS[config.type](n_features, config)
    init_weights(model)
    return model


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    features: torch.Tensor,
    ends: torch.Tensor,
    seq_len: int,
    batch_size: int,
    precision: str = "fp32",
    *,
    pad: bool = False,
) -> torch.Tensor:
    """Logits (float32) for every window end, in large no-grad batches.

    The kernels a batch runs on depend on its size, so a short last batch can round a
    window differently from a full one. `pad` fills the last batch with copies of its last
    window (dropped afterwards): every batch then has exactly `batch_size` windows, and a
    window's logits do not depend on how many others are scored with it (finseq predict on
    one bar agrees bit for bit with the same bar scored among thousands).
    """
    model.eval()
    offsets = window_offsets(seq_len, features.device)
    chunks = []
    with autocast(features.device, precision):
        for start in range(0, len(ends), batch_size):
            batch_ends = ends[start : start + batch_size]
            count = len(batch_ends)
            if pad and count < batch_size:
                batch_ends = torch.cat([batch_ends, batch_ends[-1:].expand(batch_size - count)])
            windows = gather_windows(features, batch_ends, offsets)
            chunks.append(model(windows).float()[:count])
    if not chunks:
        return torch.empty(0, 3, device=features.device)
    return torch.cat(chunks)
