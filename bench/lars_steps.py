"""How large is a LARS step at initialisation? A diagnostic for the zoo's LARS-trained rows.

For each method it builds the zoo's network and budget (``bench/zoo.py``: width-16 ResNet-18,
batch 256, seed 0), takes one augmented CIFAR-10 training batch, back-propagates the method's
loss once and prints, over the LARS-adapted weight tensors (biases and norm layers excluded, as
in training), the relative step ``‖Δw‖ / ‖w‖`` that the recipe's optimizer takes at its base
learning rate (one step of the training system's own LARS, before warm-up; the first momentum
step is the plain step):

* clipped LARS (solo-learn's, ``optim.lars_clip_lr: true``): ``Δw = min(r, lr) · (g + wd·w)``
  with the trust ratio ``r = η‖w‖ / ‖g + wd·w‖``: a loss with small gradients (``r > lr``) takes
  the plain SGD step ``lr · ‖g‖``, however small;
* unclipped LARS (the Barlow Twins / DINO authors' code): ``Δw = lr · r · (g + wd·w)``, whose
  relative size is ``lr · η`` for every tensor, whatever the gradient's magnitude.

    python bench/lars_steps.py --data-root ../shared/data simclr barlow_twins dino
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo

from specssl.train.config import Config
from specssl.train.datamodule import SSLDataModule
from specssl.train.module import SSLModule
from specssl.train.optim import build_optimizer


def relative_steps(cfg: Config) -> tuple[float, dict[bool, list]]:
    """(loss, ``{clip_lr: relative step of every LARS-adapted weight tensor}``) at init of the
    network, data and optimizer of ``cfg`` (a zoo config).

    The steps are measured, not re-derived: the training system's own optimiser
    (:func:`specssl.train.optim.build_optimizer`, its parameter groups and LARS) takes one step
    from the same weights and gradients with clipping on and off.
    """
    torch.manual_seed(cfg.seed)
    datamodule = SSLDataModule(cfg)
    datamodule.setup("fit")
    images, _ = next(iter(datamodule.train_dataloader()))
    module = SSLModule(
        cfg, 10, augment=datamodule.train_augment(), eval_transform=datamodule.eval_transform()
    )
    out = module.method(module.views_of(images))
    out.loss.backward()
    params = [p for p in module.method.parameters() if p.grad is not None]
    weights = [p.detach().clone() for p in params]
    grads = [p.grad.clone() for p in params]  # LARS scales .grad in place: restore per step
    steps: dict[bool, list[float]] = {}
    for clip in (True, False):
        for p, w, g in zip(params, weights, grads, strict=True):
            p.data.copy_(w)
            p.grad.copy_(g)
        optim_cfg = dataclasses.replace(cfg.optim, lars_clip_lr=clip)
        optimizer = build_optimizer(module.method, module.classifier, optim_cfg, cfg.optim.lr)
        optimizer.step()
        adapted = {
            id(p)
            for group in optimizer.param_groups
            if not group.get("lars_exclude", False)
            for p in group["params"]
        }
        steps[clip] = [
            ((p.detach() - w).norm() / w.norm()).item()
            for p, w in zip(params, weights, strict=True)
            if id(p) in adapted
        ]
    return out.loss.item(), steps


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2e} / {min(values):.2e} / {max(values):.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="+", help="zoo methods trained with LARS")
    parser.add_argument("--data-root", default="./data")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    args = zoo.build_parser().parse_args(["--data-root", cli.data_root])  # the zoo's budget
    print("| method | loss | ‖Δw‖/‖w‖ clipped LARS: median / min / max | unclipped LARS |")
    print("|---|---|---|---|")
    for method in cli.methods:
        cfg = zoo.config_of(args, method)
        if cfg.optim.name != "lars":
            print(f"| {method} | – | not trained with LARS ({cfg.optim.name}) | – |")
            continue
        loss, steps = relative_steps(cfg)
        print(f"| {method} | {loss:.4f} | {_spread(steps[True])} | {_spread(steps[False])} |")


if __name__ == "__main__":
    main()
