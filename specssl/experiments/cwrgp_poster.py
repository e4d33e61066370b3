"""The CW-RGP poster's analyses (c) and (d), measured.

**(c) The gradient identity.** For the whitening loss of two views and its stop-gradient proxy

    L(X)  = 1/m ||Ẑ_1 - Ẑ_2||_F^2,
    L'(X) = 1/m ||Ẑ_1 - sg(Ẑ_2)||_F^2 + 1/m ||sg(Ẑ_1) - Ẑ_2||_F^2 = L'_1 + L'_2,

the poster states ``∂L/∂θ = ∂L'/∂θ``: with ``D = Ẑ_1 - Ẑ_2``,
``dL = 2/m <D, dẐ_1 - dẐ_2>``, ``dL'_1 = 2/m <D, dẐ_1>`` and ``dL'_2 = -2/m <D, dẐ_2>`` — the
chain rule, whatever the whitening ``Ẑ_v = φ(Z_v)`` is. (The values differ: ``L' = 2L``.)
Its reading: each half is a regression of one view's whitened output onto a *fixed* target, so
minimising ``L'_1`` only needs ``Z_1`` to be full rank, not whitened. :func:`gradient_identity`
measures it on a real batch: CIFAR-10 images through the CW-RGP recipe's network at CPU scale,
whitening by ZCA / PCA / IterNorm on the channel axis of a 64-row sub-batch in 4 channel
groups (the CW-RGP authors' ``--w_size 64 --group 4``), in float32 and float64.

**(d) PCA vs ZCA target volatility.** The poster: PCA whitening fails because it produces a
volatile sequence of whitened targets. PCA's output axes are the covariance's eigenvectors,
whose sign and order rounding and small changes flip; ZCA rotates back (``U Λ^{-1/2} U^T``) and
does not depend on either. :func:`target_volatility` trains a short run and, at every step,
whitens the embedding of one fixed probe batch both ways and compares with the previous step:
the relative change ``||Ẑ_t - Ẑ_{t-1}||_F / ||Ẑ_{t-1}||_F`` and, matching each output axis to
the previous step's axis of largest ``|correlation|``, how many axes flipped sign or moved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from specssl.experiments import numerics as nx
from specssl.spectral import iternorm, pca_whiten, zca_whiten

NAME_C = "cwrgp_poster_gradient_identity"
NAME_D = "cwrgp_poster_target_volatility"
OUT_C = nx.REPO / "docs" / "results" / NAME_C
OUT_D = nx.REPO / "docs" / "results" / NAME_D
W_SIZE, GROUPS = 64, 4

Whitening = Callable[[torch.Tensor], torch.Tensor]


def whitenings(axis: str = "channel", groups: int = GROUPS) -> dict[str, Whitening]:
    """The whitening functions compared, ``(m, d) -> (m, d)``."""
    return {
        "ZCA": lambda z: zca_whiten(z, axis, groups=groups, check_finite=False),
        "PCA": lambda z: pca_whiten(z, axis, groups=groups, check_finite=False),
        "IterNorm T=4": lambda z: iternorm(z, 4, axis, groups=groups, check_finite=False),
    }


def whitening_loss(z1: torch.Tensor, z2: torch.Tensor, phi: Whitening) -> torch.Tensor:
    """``L = 1/m ||φ(Z_1) - φ(Z_2)||_F^2`` for views ``(m, d)``."""
    return (phi(z1) - phi(z2)).pow(2).sum() / z1.shape[0]


def proxy_loss(
    z1: torch.Tensor, z2: torch.Tensor, phi: Whitening
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L'_1, L'_2)``: each view's whitened output against the other's, detached."""
    a, b = phi(z1), phi(z2)
    m = z1.shape[0]
    return (a - b.detach()).pow(2).sum() / m, (a.detach() - b).pow(2).sum() / m


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def gradient_identity(
    encode: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    params: list[torch.Tensor],
    phi: Whitening,
) -> dict[str, float]:
    """Compare ``∂L/∂θ`` with ``∂L'/∂θ = ∂L'_1/∂θ + ∂L'_2/∂θ`` over ``params``.

    ``encode()`` returns the two views' embeddings ``(m, d)`` (a fresh forward each call).
    Returns the relative difference ``||g_L - g_L'|| / ||g_L||``, the largest elementwise
    difference over the largest ``|g_L|``, ``L' / L``, and each half's cosine with ``g_L`` and
    norm share."""
    z1, z2 = encode()
    g = flat_grad(whitening_loss(z1, z2, phi), params)
    z1, z2 = encode()
    l1, l2 = proxy_loss(z1, z2, phi)
    g1, g2 = flat_grad(l1, params), flat_grad(l2, params)
    z1, z2 = encode()
    with torch.no_grad():
        loss = float(whitening_loss(z1, z2, phi))
    gp = g1 + g2
    norm = float(g.norm())
    return {
        "loss": loss,
        "proxy_over_loss": float((l1 + l2).detach()) / loss,
        "rel_diff": float((g - gp).norm()) / norm,
        "max_abs_diff_over_max": float((g - gp).abs().max() / g.abs().max()),
        "cos_half1": float(g1 @ g / (g1.norm() * norm)),
        "cos_half2": float(g2 @ g / (g2.norm() * norm)),
        "half1_norm_share": float(g1.norm()) / norm,
        "grad_norm": norm,
        "finite": bool(torch.isfinite(g).all() and torch.isfinite(gp).all()),
    }


def cifar_module(data_root: str, seed: int = 0, recipe: str = "cwrgp", extra: tuple = ()):
    """The recipe's data and module at CPU scale (width-16 ResNet-18, CIFAR-10 subset)."""
    from specssl.experiments.budget import Budget
    from specssl.train.config import load_config
    from specssl.train.run import build_run

    torch.manual_seed(seed)
    ovr = Budget("cpu", data_root).overrides(batch_size=256, paper_epochs=1, spectrum=False)
    cfg = load_config(
        nx.REPO / "configs" / "cifar10" / f"{recipe}.yaml", [*ovr, f"seed={seed}", *extra]
    )
    dm, module = build_run(cfg)
    dm.setup("fit")
    return cfg, dm, module


def run_gradient_identity(data_root: str, seed: int = 0) -> list[dict[str, Any]]:
    """(c) on one real batch: the random-init CW-RGP network at CPU scale, the first W_SIZE
    rows of two augmented views of one training batch; every whitening, float32 and float64.
    BatchNorm runs in eval mode (its running statistics at initialisation) so that repeated
    forwards are identical."""
    _, dm, module = cifar_module(data_root, seed)
    images, _ = next(iter(dm.train_dataloader()))
    views = [v[:W_SIZE] for v in module.views_of(images)[:2]]
    method = module.method
    records = []
    for dtype in (torch.float32, torch.float64):
        net = torch.nn.Sequential(method.backbone, method.projector).to(dtype).eval()
        params = [p for p in net.parameters() if p.requires_grad]
        xs = [v.to(dtype) for v in views]

        def encode(net=net, xs=xs) -> tuple[torch.Tensor, torch.Tensor]:
            return net(xs[0]), net(xs[1])

        for name, phi in whitenings().items():
            rec = gradient_identity(encode, params, phi)
            rec.update(whitening=name, dtype=str(dtype).removeprefix("torch."), m=W_SIZE)
            rec.update(
                d=int(encode()[0].shape[1]), groups=GROUPS, n_params=sum(p.numel() for p in params)
            )
            records.append(rec)
    return records


# ---------------------------------------------------------------------------------- (d)


def axis_changes(now: torch.Tensor, before: torch.Tensor) -> tuple[int, int]:
    """``(flips, moves)`` of the output axes between two whitened outputs ``(m, d)``: each
    axis ``j`` of ``now`` is matched to the axis ``k`` of ``before`` with the largest
    ``|corr(now_j, before_k)|``; a *move* is ``k != j``, a *flip* a negative correlation."""
    a = now - now.mean(0)
    b = before - before.mean(0)
    a = a / a.norm(dim=0).clamp_min(1e-30)
    b = b / b.norm(dim=0).clamp_min(1e-30)
    corr = a.T @ b  # (d, d)
    best = corr.abs().argmax(dim=1)
    sign = corr.gather(1, best[:, None])[:, 0]
    moves = int((best != torch.arange(corr.shape[0])).sum())
    flips = int((sign < 0).sum())
    return flips, moves


def target_volatility(
    data_root: str, steps: int, seed: int = 0, probe: int = 256
) -> dict[str, Any]:
    """(d): train the CW-RGP recipe (its own loss: channel ZCA of 64-row sub-batches) for
    ``steps`` steps; after each step whiten the embedding ``(probe, d)`` of a fixed probe batch
    of un-augmented training images (eval mode) by PCA and by ZCA (batch axis, float64, groups
    of 128 channels) and record the change from the previous step. Returns the per-step
    series."""
    cfg, dm, module = cifar_module(data_root, seed)
    params = [p for p in module.method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    probe_images = next(iter(dm.train_dataloader()))[0][:probe]
    eval_tf = module.eval_transform
    probe_x = eval_tf(probe_images) if eval_tf is not None else probe_images.float()
    groups = cfg.method.proj_output_dim // 128
    phis = {
        "PCA": lambda z: pca_whiten(z, "batch", groups=groups),
        "ZCA": lambda z: zca_whiten(z, "batch", groups=groups),
    }
    previous: dict[str, torch.Tensor] = {}
    series: dict[str, dict[str, list]] = {n: {"change": [], "flips": [], "moves": []} for n in phis}
    losses = []
    start = time.perf_counter()
    step = 0
    while step < steps:
        for images, _ in dm.train_dataloader():
            if step >= steps:
                break
            module.train()
            out = module.method(module.views_of(images))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
            module.eval()
            with torch.no_grad():
                z = module.method.projector(module.method.backbone(probe_x)).double()
            for name, phi in phis.items():
                zhat = phi(z)
                if name in previous:
                    before = previous[name]
                    series[name]["change"].append(float((zhat - before).norm() / before.norm()))
                    flips, moves = axis_changes(zhat, before)
                    series[name]["flips"].append(flips)
                    series[name]["moves"].append(moves)
                previous[name] = zhat
            step += 1
    return {
        "steps": steps,
        "seed": seed,
        "probe": probe,
        "d": int(cfg.method.proj_output_dim),
        "groups": groups,
        "losses": losses,
        "series": series,
        "train_wall_s": round(time.perf_counter() - start, 1),
    }


# ------------------------------------------------------------------------------ reports


def report_c(meta: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The (c) report, generated from its records."""
    rows = [
        [
            r["whitening"],
            r["dtype"],
            nx.fmt(r["rel_diff"]),
            nx.fmt(r["max_abs_diff_over_max"]),
            f"{r['proxy_over_loss']:.6f}",
            f"{r['cos_half1']:.3f}",
            f"{r['cos_half2']:.3f}",
            f"{r['half1_norm_share']:.3f}",
        ]
        for r in records
    ]
    table = nx.markdown_table(
        [
            "whitening",
            "precision",
            "‖∇L − ∇L′‖ / ‖∇L‖",
            "max |∇L − ∇L′| / max |∇L|",
            "L′ / L",
            "cos(∇L′₁, ∇L)",
            "cos(∇L′₂, ∇L)",
            "‖∇L′₁‖ / ‖∇L‖",
        ],
        rows,
    )
    worst = {
        dt: max(r["rel_diff"] for r in records if r["dtype"] == dt) for dt in ("float32", "float64")
    }
    cos = [r["cos_half1"] for r in records] + [r["cos_half2"] for r in records]
    r0 = records[0]
    return "\n".join(
        [
            "# CW-RGP poster (c): the whitening loss and its stop-gradient proxy have the same "
            "gradient",
            "",
            "_Generated by `experiments/cwrgp_poster_gradient_identity.py` from `records.json`._",
            "",
            "Poster: for L = 1/m ‖Ẑ₁ − Ẑ₂‖²_F and L′ = 1/m ‖Ẑ₁ − sg(Ẑ₂)‖²_F + 1/m ‖sg(Ẑ₁) − "
            "Ẑ₂‖²_F (sg: stop-gradient), ∂L/∂θ = ∂L′/∂θ. It is the chain rule (with D = Ẑ₁ − Ẑ₂: "
            "dL = 2/m ⟨D, dẐ₁ − dẐ₂⟩ = dL′₁ + dL′₂), so it holds for any whitening; the values "
            "differ (L′ = 2L). Measured on one real batch, θ = every parameter of the backbone "
            "and projector.",
            "",
            "## Setup",
            "",
            f"- CW-RGP recipe at CPU scale (`configs/cifar10/cwrgp.yaml`, width-16 ResNet-18, "
            f"projector → d = {r0['d']}), random initialisation, BatchNorm in eval mode; "
            f"{r0['n_params']} parameters",
            f"- the first m = {r0['m']} rows of two augmented views of one CIFAR-10 training "
            f"batch; whitening on the channel axis in {r0['groups']} channel groups (the CW-RGP "
            "authors' --w_size 64 --group 4), no random group permutation",
            *nx.provenance_lines(meta),
            "",
            "## Reading",
            "",
            (
                "The two gradients are identical, bit for bit, for every whitening in float32 "
                "and float64 (relative difference 0: autograd runs the same operations for L and "
                "for L′₁ + L′₂)."
                if worst["float32"] == worst["float64"] == 0
                else f"The two gradients agree to {nx.fmt(worst['float32'])} (relative, float32) "
                f"and {nx.fmt(worst['float64'])} (float64) for every whitening."
            )
            + " Each half alone is not the gradient: its cosine with ∇L is between "
            f"{min(cos):.3f} and {max(cos):.3f}. So training with L is training each view's "
            "whitened output towards a fixed target (the other view's whitened output), "
            "which is the poster's reading: minimising L′₁ asks Z₁ to be full rank, not "
            "whitened.",
            "",
            "## Results",
            "",
            table,
            "",
            "Records: [records.json](records.json), [records.csv](records.csv).",
        ]
    )


def report_d(meta: dict[str, Any], run: dict[str, Any]) -> str:
    """The (d) report, generated from its record."""
    s = run["series"]
    n = len(s["PCA"]["change"])
    d = run["d"]

    def med(xs: list[float]) -> float:
        return nx.median(xs)

    def frac(xs: list[int]) -> str:
        return f"{sum(x > 0 for x in xs)}/{len(xs)}"

    rows = [
        [
            name,
            nx.fmt(med(v["change"])),
            nx.fmt(max(v["change"])),
            f"{statistics_mean(v['flips']):.1f}",
            f"{statistics_mean(v['moves']):.1f}",
            frac(v["flips"]),
            frac(v["moves"]),
        ]
        for name, v in s.items()
    ]
    table = nx.markdown_table(
        [
            "whitening",
            "median step-to-step change ‖Ẑ_t − Ẑ_{t−1}‖/‖Ẑ_{t−1}‖",
            "largest change",
            f"mean axes flipped (of {d})",
            f"mean axes moved (of {d})",
            "steps with a flip",
            "steps with a move",
        ],
        rows,
    )
    pca, zca = s["PCA"], s["ZCA"]
    ratio = med(pca["change"]) / med(zca["change"])
    return "\n".join(
        [
            "# CW-RGP poster (d): PCA whitening gives a volatile sequence of targets, ZCA does not",
            "",
            "_Generated by `experiments/cwrgp_poster_target_volatility.py` from `records.json`._",
            "",
            "Poster: PCA whitening fails to avoid dimensional collapse because the sequence of "
            "its whitened targets is volatile. PCA's output axes are the covariance's "
            "eigenvectors, whose signs and order small changes of the embedding flip; ZCA "
            "(U Λ^-1/2 U^T) rotates back and depends on neither. Measured along a short real "
            "training: after every step the embedding of one fixed probe batch is whitened both "
            "ways and compared with the previous step's.",
            "",
            "## Setup",
            "",
            f"- CW-RGP recipe at CPU scale (channel ZCA loss, width-16 ResNet-18, d = {d}), "
            f"AdamW at the recipe's lr without its schedule, {run['steps']} steps, seed "
            f"{run['seed']}",
            f"- probe: {run['probe']} un-augmented training images, eval mode; PCA / ZCA on the "
            f"batch axis in float64, {run['groups']} groups of {d // run['groups']} channels",
            "- axes: each output axis is matched to the previous step's axis of largest "
            "|correlation|; *moved*: matched to another index, *flipped*: negative correlation",
            *nx.provenance_lines(meta),
            "",
            "## Reading",
            "",
            f"Over {n} consecutive step pairs the PCA targets change by a median "
            f"{nx.fmt(med(pca['change']))} of their norm per step, ZCA's by "
            f"{nx.fmt(med(zca['change']))} ({ratio:.3g}× less stable for PCA). PCA flips the "
            f"sign of {statistics_mean(pca['flips']):.1f} and moves "
            f"{statistics_mean(pca['moves']):.1f} of its {d} axes per step on average "
            f"(flips in {frac(pca['flips'])} steps); ZCA {statistics_mean(zca['flips']):.1f} "
            f"and {statistics_mean(zca['moves']):.1f}. ZCA's change is the whitened "
            "embedding's own movement under training at this learning rate (not small at "
            "the start of training); PCA adds the eigenbasis's sign flips and reordering on "
            "top of it, as the poster says.",
            "",
            "## Results",
            "",
            table,
            "",
            "![step-to-step change of the whitened targets](figure.png)",
            "",
            "Records: [records.json](records.json) (per step).",
        ]
    )


def statistics_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def plot_d(run: dict[str, Any], path) -> None:
    """Step-to-step change (log y) and axes flipped per step, PCA vs ZCA."""
    from specssl.experiments.report import new_figure, save_figure

    fig, axes = new_figure(2, 1, size=(4.8, 3.4))
    a, b = axes[0]
    colors = {"PCA": "tab:red", "ZCA": "tab:blue"}
    for name, v in run["series"].items():
        ts = list(range(1, len(v["change"]) + 1))
        a.plot(ts, [max(c, 1e-17) for c in v["change"]], color=colors[name], label=name)
        b.plot(ts, v["flips"], color=colors[name], label=f"{name}: flipped")
        b.plot(ts, v["moves"], color=colors[name], linestyle=":", label=f"{name}: moved")
    a.set_yscale("log")
    a.set_ylabel("‖Ẑ_t − Ẑ_{t−1}‖_F / ‖Ẑ_{t−1}‖_F")
    b.set_ylabel(f"output axes (of {run['d']})")
    for ax, title in (
        (a, "(a) change of the whitened probe batch"),
        (b, "(b) axes flipped / moved"),
    ):
        ax.set_xlabel("training step t")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
