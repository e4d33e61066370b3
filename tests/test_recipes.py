"""Every recipe in configs/ builds and trains one step.

Each recipe is loaded unchanged (its method, loss, options, augmentation preset, optimiser and
schedule) and only shrunk to run on a CPU in seconds: tiny images (the bundled digits, through
the recipe's own augmentation preset), a width-4 backbone of the recipe's architecture, a
32-wide projector, a batch of 32 (sub-batches follow), float32, one step, no monitors.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from specssl.train.config import load_config
from specssl.train.run import pretrain

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("*/*.yaml"))
BATCH = 32

TINY = [
    "data.name=digits",
    "data.root=null",
    "data.train_split=train",
    "data.val_split=test",
    "data.subset=64",
    "data.val_subset=32",
    f"data.batch_size={BATCH}",
    "data.num_workers=0",
    "backbone.width=4",
    "method.proj_hidden_dim=32",
    "method.proj_output_dim=32",
    "method.pred_hidden_dim=16",
    "trainer.max_steps=1",
    "trainer.max_epochs=1",
    "trainer.precision=32-true",  # half precision on a CPU is issue 20's
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "monitor.knn_every=0",
    "monitor.knn_on_init=false",
    "monitor.spectrum_every=0",
    "monitor.online_probe=false",
    "monitor.knn_train_subset=null",
]


def shrink_loss(raw: dict) -> list[str]:
    """Sub-batch and queue sizes of the recipe scaled to the tiny batch."""
    loss = (raw.get("method") or {}).get("loss") or {}
    options = (raw.get("method") or {}).get("options") or {}
    out = []
    if loss.get("w_size"):
        out.append(f"method.loss.w_size={BATCH // 2}")
    batch_axis = loss.get("axis", "batch" if raw["method"]["name"] == "wmse" else "channel")
    if raw["method"]["name"] in ("wmse", "cwrgp") and batch_axis == "batch":
        out.append("method.proj_output_dim=8")  # a d x d Cholesky needs d < sub-batch rows
    for key in ("queue_size", "queue_length"):
        if key in options:
            out.append(f"method.options.{key}={2 * BATCH}")
    if "out_dim" in options:
        out.append("method.options.out_dim=64")
    if "num_prototypes" in options:
        out.append("method.options.num_prototypes=16")
    return out


def test_every_recipe_directory_is_covered():
    assert {p.parent.name for p in RECIPES} >= {
        "cifar10",
        "cifar100",
        "imagenet",
        "imagenet100",
        "stl10",
        "tiny_imagenet",
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_builds_and_trains_one_step(recipe, tmp_path):
    raw = yaml.safe_load(recipe.read_text())
    full = load_config(recipe)  # the recipe as written loads
    assert full.data.batch_size >= 2
    overrides = [*TINY, *shrink_loss(raw), f"output_dir={tmp_path}", "run_name=step"]
    cfg = load_config(recipe, overrides)
    assert cfg.method.name == full.method.name and cfg.data.views == full.data.views
    torch.manual_seed(0)
    result = pretrain(cfg, logger=False)
    assert result.steps == 1
    assert (tmp_path / "step" / "checkpoints" / "last.ckpt").exists()
    ckpt = torch.load(tmp_path / "step" / "checkpoints" / "last.ckpt", weights_only=False)
    weights = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert all(math.isfinite(float(w.abs().sum())) for w in weights)
