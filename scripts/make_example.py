"""Writes models/tiny-kws-random.pt: a small causal Liquid-S4 keyword model with *random* weights
(seed 0), for trying the tools. It is not trained: its predictions mean nothing."""
import sys
from pathlib import Path

import torch

from liquid_edge.checkpoint import save_checkpoint
from liquid_edge.config import ModelConfig
from liquid_edge.model import LiquidS4Classifier

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]

out = Path(sys.argv[1] if len(sys.argv) > 1 else "models/tiny-kws-random.pt")
torch.manual_seed(0)
cfg = ModelConfig(d_model=32, n_layers=2, d_state=8, d_output=len(LABELS), l_max=16000, dt_min=0.002, dt_max=0.2,
                  liquid_kernel="polyb", liquid_degree=2, labels=LABELS)
save_checkpoint(LiquidS4Classifier(cfg).eval(), out, extra={"note": "random weights, seed 0 (scripts/make_example.py)"})
print(f"wrote {out}")
