"""How large is a LARS step at initialisation? A diagnostic for the zoo's LARS-trained rows.

For each method it builds the zoo's network and budget (``bench/zoo.py``: width-16 ResNet-18,
batch 256, seed 0), takes one augmented CIFAR-10 training batch, back-propagates the method's
loss once and prints, over the LARS-adapted weight tensors (biases and norm layers excluded, as
in training), the relative step ``‖Δw‖ / ‖w‖`` that the recipe's optimizer would take at its
base learning rate (before warm-up and momentum):

* clipped LARS (solo-learn's, ``optim.lars_clip_lr: true``): ``Δw = min(r, lr) · (g + wd·w)``
  with the trust ratio ``r = η‖w‖ / ‖g + wd·w‖``: a loss with small gradients (``r > lr``) takes
  the plain SGD step ``lr · ‖g‖``, however small;
* unclipped LARS (the Barlow Twins / DINO authors' code): ``Δw = lr · r · (g + wd·w)``, whose
  relative size is ``lr · η`` for every tensor, whatever the gradient's magnitude.

    python bench/lars_steps.py --data-root ../shared/data simclr barlow_twins dino
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo

from specssl.train.datamodule import SSLDataModule
from specssl.train.module import SSLModule


def relative_steps(method: str, args: argparse.Namespace) -> tuple[float, list[float]]:
    """(loss, clipped-LARS relative step of every LARS-adapted weight tensor) at init."""
    cfg = zoo.config_of(args, method)
    torch.manual_seed(cfg.seed)
    datamodule = SSLDataModule(cfg)
    datamodule.setup("fit")
    images, _ = next(iter(datamodule.train_dataloader()))
    module = SSLModule(
        cfg, 10, augment=datamodule.train_augment(), eval_transform=datamodule.eval_transform()
    )
    out = module.method(module.views_of(images))
    out.loss.backward()
    lr, eta, wd = cfg.optim.lr, cfg.optim.lars_eta, cfg.optim.weight_decay
    steps = []
    for name, p in module.method.named_parameters():
        if p.grad is None or p.ndim <= 1 or name.endswith(".bias"):
            continue  # frozen targets have no gradient; biases / norms are not LARS-adapted
        w_norm, g_norm = p.norm(), (p.grad + wd * p).norm()
        trust = eta * w_norm / g_norm
        steps.append((min(trust, torch.tensor(lr)) * g_norm / w_norm).item())
    return out.loss.item(), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="+", help="zoo methods trained with LARS")
    parser.add_argument("--data-root", default="./data")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    args = argparse.Namespace(
        data_root=cli.data_root, epochs=4, width=16, seed=0, runs_dir="runs/zoo", variant=None
    )
    print("| method | loss | clipped LARS: median / min / max ‖Δw‖/‖w‖ | unclipped: lr·η |")
    print("|---|---|---|---|")
    for method in cli.methods:
        cfg = zoo.config_of(args, method)
        if cfg.optim.name != "lars":
            print(f"| {method} | – | not trained with LARS ({cfg.optim.name}) | – |")
            continue
        loss, steps = relative_steps(method, args)
        print(
            f"| {method} | {loss:.4f} | {statistics.median(steps):.2e} / {min(steps):.2e} / "
            f"{max(steps):.2e} | {cfg.optim.lr * cfg.optim.lars_eta:.2e} |"
        )


if __name__ == "__main__":
    main()
