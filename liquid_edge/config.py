"""The model configuration: one JSON-serialisable record, validated on construction."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration that cannot describe a model."""


@dataclass
class ModelConfig:
    d_input: int = 1
    d_model: int = 128
    n_layers: int = 6
    d_output: int = 35
    # the SSM
    d_state: int = 64
    channels: int = 1
    bidirectional: bool = False
    l_max: int | None = 16000
    n_ssm: int | None = None
    rank: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    # the liquid terms
    liquid_kernel: str | None = "polyb"     # None, "polyb" or "kb"
    liquid_degree: int = 2
    lcontract: str | None = None            # None, "tanh" or "lecun"
    liquid_mode: str = "causal"             # "causal" (ours) or "official" (raminmh/liquid-s4)
    allcombs: bool = True                   # official mode only: how U_p is built
    # the backbone
    prenorm: bool = True
    norm: str = "batch"                     # "batch" or "layer"
    dropout: float = 0.0
    pool: str = "mean"                      # "mean" or "last"
    # what the data is
    sample_rate: int = 16000
    labels: list[str] = field(default_factory=list)
    # input features: "raw" samples (the paper's setting) or "logmel" frames (d_input = n_mels;
    # l_max then counts frames of `hop` samples, each frame `win` samples long)
    features: str = "raw"
    n_mels: int = 40
    win: int = 400
    hop: int = 160

    def __post_init__(self) -> None:
        checks = [
            (self.norm in ("batch", "layer"), f"norm must be 'batch' or 'layer', not {self.norm!r}"),
            (self.pool in ("mean", "last"), f"pool must be 'mean' or 'last', not {self.pool!r}"),
            (self.liquid_kernel in (None, "polyb", "kb"), f"liquid_kernel must be null, 'polyb' or 'kb', not {self.liquid_kernel!r}"),
            (self.liquid_degree >= 2, f"liquid_degree must be >= 2, not {self.liquid_degree}"),
            (self.lcontract in (None, "none", "tanh", "lecun"), f"lcontract must be null, 'tanh' or 'lecun', not {self.lcontract!r}"),
            (self.liquid_mode in ("causal", "official"), f"liquid_mode must be 'causal' or 'official', not {self.liquid_mode!r}"),
            (min(self.d_input, self.d_model, self.n_layers, self.d_output, self.d_state, self.channels, self.rank) >= 1,
             "sizes must be positive"),
            (self.n_ssm is None or (self.n_ssm >= 1 and self.d_model % self.n_ssm == 0), f"n_ssm={self.n_ssm} must divide d_model={self.d_model}"),
            (not self.labels or len(self.labels) == self.d_output, f"{len(self.labels)} labels for d_output={self.d_output}"),
            (self.features in ("raw", "logmel"), f"features must be 'raw' or 'logmel', not {self.features!r}"),
            (self.features == "raw" or (self.d_input == self.n_mels and self.win >= self.hop >= 1),
             f"logmel features need d_input == n_mels ({self.d_input} != {self.n_mels}) and win >= hop >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config option(s): {', '.join(unknown)}")
        return cls(**d)

    @property
    def samples_per_step(self) -> int:
        """Input samples per model time step: 1 for raw audio, hop for log-mel frames."""
        return self.hop if self.features == "logmel" else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
