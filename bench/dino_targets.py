"""How informative are DINO's teacher targets? A diagnostic for the zoo's DINO row.

For a DINO run directory (default: the zoo's ``runs/zoo/dino``) it builds the network at random
initialisation (seed 0) and from the run's last checkpoint, passes the first ``--images`` CIFAR-10
test images (normalised, not augmented) through backbone, projection MLP, L2 normalisation and
prototypes, and prints per state and BatchNorm mode (``train``: batch statistics, what the loss
sees during training; ``eval``: running statistics, which at random initialisation are the
identity and so do not show what training starts from):

* the mean pairwise cosine similarity of the bottleneck embeddings (1 = every image the same);
* the mean entropy of the centred, sharpened teacher distribution
  ``softmax((s - mean_batch s) / τ_t)`` for the recipe's teacher temperatures, next to ln K
  (the entropy of the uniform distribution: targets that carry no information);
* the standard deviation over images of each prototype's score, averaged over prototypes.

    python bench/dino_targets.py --data-root ../shared/data
    python bench/dino_targets.py --data-root ../shared/data --no-trained \
        --set method.options.use_bn=true      # random init of a variant's network
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from specssl.data.augment import dataset_stats
from specssl.data.datasets import read_cifar
from specssl.train.config import load_config
from specssl.train.module import SSLModule


def target_statistics(
    module: SSLModule, images: torch.Tensor, temps: list[float], train_mode: bool
) -> dict:
    """Statistics of DINO's outputs for ``images: (n, 3, 32, 32)`` normalised floats, with
    BatchNorm on batch statistics (``train_mode``) or running statistics."""
    method = module.method
    method.train(train_mode)
    with torch.no_grad():
        z = F.normalize(method.projector(method.backbone(images)), dim=-1)
        scores = method.prototypes(z)
    n = len(z)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    centred = scores - scores.mean(dim=0, keepdim=True)
    stats = {
        "pairwise_cos": (z @ z.T)[off_diagonal].mean().item(),
        "score_std": scores.std(dim=0).mean().item(),
        "ln_K": math.log(scores.shape[1]),
    }
    for temp in temps:
        p = F.softmax(centred / temp, dim=-1)
        stats[f"entropy@{temp:g}"] = -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/zoo/dino"))
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (a variant)"
    )
    parser.add_argument(
        "--no-trained", action="store_true", help="random initialisation only (no checkpoint)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.run_dir / "config.yaml", args.set)
    images, _, _ = read_cifar(args.data_root, "cifar10", "test")
    mean, std = dataset_stats("cifar10")
    x = images[: args.images].float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.manual_seed(0)
    module = SSLModule(cfg, 10)
    loss = module.method.loss_fn
    temps = sorted({loss.warmup_teacher_temp, loss.teacher_temp})
    states = [("random init", {k: v.clone() for k, v in module.state_dict().items()})]
    if not args.no_trained:
        state = torch.load(args.run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
        states.append(("trained (last.ckpt)", state["state_dict"]))
    rows = []
    for name, state_dict in states:
        for train_mode in (True, False):
            module.load_state_dict(state_dict)  # a train-mode pass updates BN running stats
            mode = "BN train" if train_mode else "BN eval"
            rows.append((f"{name}, {mode}", target_statistics(module, x, temps, train_mode)))

    keys = list(rows[0][1])
    print("| state | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, stats in rows:
        print(f"| {name} | " + " | ".join(f"{stats[k]:.4f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
