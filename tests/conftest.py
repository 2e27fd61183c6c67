import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_edge.config import ModelConfig
from liquid_edge.layer import LiquidS4
from liquid_edge.model import LiquidS4Classifier

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("LIQUID_EDGE_REFVECTORS", ROOT.parent / "shared" / "refvectors"))
LAYER_CASES = ["s4_plain", "polyb_deg2_allcombs", "polyb_deg2_shift", "kb_deg2_shift"]

needs_ref = pytest.mark.skipif(not REF.is_dir(), reason=f"reference vectors not found at {REF}")


def official_layer(case: str, mode: str = "official") -> tuple[LiquidS4, dict]:
    """A refvector layer case as our LiquidS4 (official wrapper tensors loaded), and its io arrays."""
    kw = json.loads((REF / f"{case}.kwargs.json").read_text())["kwargs"]
    sd = torch.load(REF / f"{case}.state_dict.pt", weights_only=True)
    ex = torch.load(REF / f"{case}.extras.pt", weights_only=True)
    layer = LiquidS4(kw["d_model"], kw["d_state"], kw["channels"], kw["bidirectional"], kw["l_max"], kw["n_ssm"],
                     kw["rank"], kw["dt_min"], kw["dt_max"], 0.0, kw["liquid_kernel"], kw["liquid_degree"],
                     kw["lcontract"], mode, kw["allcombs"])
    if mode == "official" and kw["liquid_kernel"]:
        for k, v in ex["wrapper_aux"].items():
            sd[k] = torch.view_as_real(v.resolve_conj()) if v.is_complex() else v
    layer.load_state_dict(sd)
    return layer.eval(), dict(np.load(REF / f"{case}.io.npz"))


def small_config(**kw) -> ModelConfig:
    base = dict(d_model=8, n_layers=2, d_state=8, d_output=5, l_max=64, dt_min=0.01, dt_max=0.1)
    base.update(kw)
    return ModelConfig(**base)


def random_model(seed: int = 0, randomize_norm: bool = True, **kw) -> LiquidS4Classifier:
    """A small model with non-trivial BatchNorm statistics (so folding them is actually tested)."""
    torch.manual_seed(seed)
    m = LiquidS4Classifier(small_config(**kw))
    if randomize_norm:
        g = torch.Generator().manual_seed(seed + 1)
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
                d = mod.weight.shape[0]
                mod.weight.data = 1 + 0.1 * torch.randn(d, generator=g)
                mod.bias.data = 0.1 * torch.randn(d, generator=g)
                if isinstance(mod, torch.nn.BatchNorm1d):
                    mod.running_mean = 0.1 * torch.randn(d, generator=g)
                    mod.running_var = 0.5 + torch.rand(d, generator=g)
    return m.eval()
