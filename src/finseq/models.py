"""model.type → nn.Module: a small registry of the classifiers the pipeline trains.

Every model maps a batch of windows (batch, seq_len, features) to logits over the
three classes (-1, 0, 1). Training and loading a checkpoint both build models here,
from the same config, so a saved state_dict always finds the module it fits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from finseq.labels import NUM_CLASSES
from finseq.params import ModelConfig


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


MODELS: dict[str, Callable[[int, ModelConfig], nn.Module]] = {
    "lstm": lambda n_features, config: RecurrentClassifier(nn.LSTM, n_features, config),
    "gru": lambda n_features, config: RecurrentClassifier(nn.GRU, n_features, config),
    "linear": LastBarLinear,
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
