"""Named evaluation protocols: the papers' authors' settings as presets.

``specssl eval CKPT --preset NAME`` and ``specssl finetune CKPT --preset NAME`` take their
settings from one entry of :data:`EVAL_PRESETS` / :data:`FINETUNE_PRESETS`; any flag given
explicitly still wins over the preset's value. The report (JSON) records the preset's name,
source, resolved values, the flags that overrode it and its known :attr:`deviations` from the
source code.

Every value below was read from the authors' code (not their papers), at these commits:

* INTL (*Modulate Your Spectrum in Self-Supervised Learning*): ``winci-ai/INTL`` @ 0aa69af —
  ``evaluate.py`` (ImageNet linear / semi-supervised), ``cfg.py`` (its defaults),
  ``scripts/ep800.sh``, ``scripts/ep{100,200,400,800}_multi-crop_ema.sh``, ``scripts/in100.sh``
  (the values each script passes), ``cifar/eval/evaluate.py`` + ``cifar/eval/dataloader.py``
  + ``cifar/cfg.py`` (CIFAR evaluation).
* CW-RGP (*An Investigation into Whitening Loss for Self-supervised Learning*):
  ``winci-ai/CW-RGP`` — ``base/eval/{sgd,knn,get_data}.py``, ``base/datasets/base.py``,
  ``base/cfg.py`` (the W-MSE evaluation it inherits), ``ImageNet/lincls.py``,
  ``ImageNet/cfg.py``, ``scripts/ImageNet.sh``.

What INTL's ``evaluate.py`` computes (linear ``--weights freeze``, semi-supervised
``--weights finetune``): ``torchvision`` ResNet, ``fc`` initialised N(0, 0.01²) / zero;
``SGD(momentum=0.9, weight_decay=0)`` (hard-coded: ``cfg.py``'s ``--wd 1e-5`` is pretraining's
and never reaches this optimizer; no Nesterov); learning rates ``--lr-classifier`` (default 0.2)
and ``--lr-backbone`` (default 0.004) each scaled by ``bs / 256`` with ``--bs 256``;
``--schedule step`` (default): ``MultiStepLR([60, 80], 0.1)`` stepped per epoch — for the
20-epoch semi-supervised runs the milestones are never reached, the lr is constant; training
images ``RandomResizedCrop(224)`` (scale 0.08–1) + horizontal flip, test images resize 256 +
centre crop 224; the frozen backbone runs in ``eval()`` mode (BatchNorm statistics fixed), the
fine-tuned one in ``train()`` mode; ``--train-percent 1 | 10`` reads SimCLR's ImageNet image
lists (``src/percent/{1,10}percent.txt``: 12,811 / 128,116 file names).

This module is torch-free (the CLI imports it to build ``--help``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "EVAL_PRESETS",
    "FINETUNE_PRESETS",
    "FinetunePreset",
    "LinearSGDPreset",
    "ProbePreset",
    "preset_type",
    "record",
]

_COMMIT_INTL = "winci-ai/INTL@0aa69af"
_COMMIT_CWRGP = "winci-ai/CW-RGP"
_BEST_EPOCH = (
    "specssl reports the last epoch; the authors' script validates after every epoch and "
    "also keeps the best top-1 (best_acc1)"
)


@dataclass(frozen=True)
class _Preset:
    """Common part: ``name``, ``source`` (script and file the values come from) and
    ``deviations`` (where the authors' code does something these settings cannot express)."""

    name: str
    source: str
    deviations: tuple[str, ...]

    #: The ``specssl eval -p`` protocols (or ``finetune``) the preset configures.
    protocols: ClassVar[tuple[str, ...]] = ()
    _META: ClassVar[tuple[str, ...]] = ("name", "source", "deviations")

    def values(self) -> dict[str, Any]:
        """The settings (every field but name, source and deviations)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._META}


@dataclass(frozen=True)
class LinearSGDPreset(_Preset):
    """``specssl eval -p linear-sgd``: a linear layer on the frozen backbone (eval mode),
    trained on augmented images (:func:`specssl.eval.linear_sgd.linear_eval_sgd`).

    ``batch_size`` is the authors' global batch; specssl's ``--batch-size`` is per device (the
    lr is scaled by the global batch), so on ``N`` devices pass ``--batch-size batch_size/N``.
    """

    epochs: int
    lr: float  # for a global batch of 256; used as lr * batch / 256
    batch_size: int  # global batch (one device: as it is)
    weight_decay: float
    schedule: str  # "step" (x gamma at each milestone epoch) | "cos" (per epoch, to 0)
    milestones: tuple[int, ...] | None  # step only
    gamma: float = 0.1
    momentum: float = 0.9
    lars: bool = False  # apex LARC(trust_coefficient=0.001, clip=False) around the SGD
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range

    protocols: ClassVar[tuple[str, ...]] = ("linear-sgd",)


@dataclass(frozen=True)
class ProbePreset(_Preset):
    """``specssl eval -p knn linear``: kNN and a linear classifier on cached frozen features of
    un-augmented images (:func:`specssl.core.knn.knn_accuracy`,
    :func:`specssl.eval.probe.linear_probe`)."""

    optimizer: str  # linear: "adam" | "sgd" | "lbfgs"
    lr: float
    lr_end: float | None  # "exp" schedule: lr at the last epoch
    schedule: str  # linear: "exp" (per epoch, lr -> lr_end) | "cos"
    epochs: int
    batch_size: int  # linear: mini-batch of features
    weight_decay: float  # L2 coefficient (Adam's coupled weight_decay)
    standardize: bool  # linear: per-dimension standardisation of the features first
    knn_k: tuple[int, ...]
    knn_metric: str  # "cosine" | "euclidean"

    protocols: ClassVar[tuple[str, ...]] = ("knn", "linear")


@dataclass(frozen=True)
class FinetunePreset(_Preset):
    """``specssl finetune``: backbone + new linear head on a labelled subset
    (:class:`specssl.eval.semisup.FinetuneConfig` fields of the same names)."""

    percent: float  # labelled share of the training set, in percent
    epochs: int
    batch_size: int
    lr_backbone: float  # for batch 256; used as lr * batch_size / 256
    lr_head: float  # idem
    weight_decay: float
    momentum: float
    nesterov: bool
    schedule: str  # "step" | "cos"
    milestones: tuple[int, ...] | None  # step only (epochs)
    gamma: float
    head_init_std: float | None  # head weight ~ N(0, std²), bias 0; None: nn.Linear default

    protocols: ClassVar[tuple[str, ...]] = ("finetune",)


# --------------------------------------------------------------------------- linear (SGD)
def _intl_linear(name: str, lr: float, script: str) -> LinearSGDPreset:
    return LinearSGDPreset(
        name=name,
        source=(
            f"{_COMMIT_INTL} {script} (linear classification: --epochs 100 "
            f"--lr-classifier {lr:g}) + evaluate.py, cfg.py"
        ),
        epochs=100,  # script: --epochs 100
        lr=lr,  # script: --lr-classifier; evaluate.py: lr_classifier * bs / 256
        batch_size=256,  # cfg.py: --bs default 256 (the script passes none to evaluate.py)
        weight_decay=0.0,  # evaluate.py: SGD(..., momentum=0.9, weight_decay=0)
        schedule="step",  # cfg.py: --schedule default 'step'
        milestones=(60, 80),  # evaluate.py: MultiStepLR(milestones=[60, 80], gamma=0.1)
        gamma=0.1,
        momentum=0.9,
        deviations=(_BEST_EPOCH,),
    )


_LINEAR = [
    _intl_linear("intl_linear", 0.2, "scripts/ep800.sh"),
    _intl_linear(
        "intl_m_linear",
        0.4,
        "scripts/ep800_multi-crop_ema.sh (also ep100/ep200/ep400_multi-crop_ema.sh)",
    ),
    _intl_linear("intl_in100_linear", 0.2, "scripts/in100.sh"),
    LinearSGDPreset(
        name="cwrgp_in_linear",
        source=(
            f"{_COMMIT_CWRGP} scripts/ImageNet.sh (lincls.py --lars) + ImageNet/lincls.py, "
            "ImageNet/cfg.py"
        ),
        epochs=100,  # cfg.py: --epochs default 100 (ImageNet.sh passes none to lincls.py)
        lr=0.1,  # cfg.py: --lr_eval 0.1; lincls.py: init_lr = lr_eval * bs_eval / 256
        batch_size=1024,  # cfg.py: --bs_eval 1024
        weight_decay=0.0,  # cfg.py: --wd_eval 0.
        schedule="cos",  # lincls.py adjust_learning_rate: init_lr * 0.5 (1 + cos(pi e / E))
        milestones=None,
        gamma=0.1,
        momentum=0.9,  # cfg.py: --momentum 0.9
        lars=True,  # ImageNet.sh: --lars -> apex LARC(trust_coefficient=.001, clip=False)
        deviations=(_BEST_EPOCH,),
    ),
]


# ------------------------------------------------------------------ frozen-feature probe
def _wmse_probe(name: str, source: str, normalisation: str) -> ProbePreset:
    return ProbePreset(
        name=name,
        source=source,
        optimizer="adam",  # eval_sgd: optim.Adam(clf.parameters(), lr=lr_start, ...)
        lr=1e-2,  # eval_sgd: lr_start = 1e-2
        lr_end=1e-6,  # eval_sgd: lr_end = 1e-6, ExponentialLR gamma=(lr_end/lr_start)^(1/500)
        schedule="exp",  # scheduler.step() once per epoch
        epochs=500,  # eval_sgd(epoch=500)
        batch_size=1000,  # randperm(...).view(-1, 1000)
        weight_decay=5e-6,  # Adam(weight_decay=5e-6)
        standardize=False,  # raw backbone features (get_data)
        knn_k=(5,),  # cfg.py: --knn default 5
        knn_metric="euclidean",  # eval_knn: torch.cdist, majority vote of the k nearest
        deviations=(
            "the authors' classifier starts from nn.Linear's default init and Adam also decays "
            "the bias; specssl starts from zero and decays the weight only",
            "kNN ties: the authors take the smallest class index among the most frequent "
            "labels, specssl the class whose neighbours are nearer",
            "the authors' loaders drop the last incomplete batch of 1000 images "
            "(drop_last=True); specssl keeps every image",
            normalisation,
        ),
    )


_PROBE = [
    _wmse_probe(
        "wmse_probe",
        f"{_COMMIT_CWRGP} base/eval/sgd.py, base/eval/knn.py, base/datasets/base.py "
        "(bs_clf 1000), base/cfg.py (--knn 5): the W-MSE evaluation",
        "input normalisation: CW-RGP's CIFAR-10 std is (0.2023, 0.1994, 0.2010), specssl's "
        "(0.247, 0.2435, 0.2616)",
    ),
    _wmse_probe(
        "intl_cifar_probe",
        f"{_COMMIT_INTL} cifar/eval/evaluate.py (eval_sgd, eval_knn), cifar/eval/dataloader.py "
        "(bs_clf 1000), cifar/cfg.py (--knn 5)",
        "input normalisation: INTL normalises CIFAR-100 with CIFAR-10's mean/std, specssl "
        "with CIFAR-100's own",
    ),
]


# ------------------------------------------------------------------------ semi-supervised
def _intl_semisup(name: str, percent: int, lr_backbone: float, script: str) -> FinetunePreset:
    return FinetunePreset(
        name=name,
        source=(
            f"{_COMMIT_INTL} {script} (semi-supervised: --epochs 20 --lr-classifier 0.2 "
            f"--lr-backbone {lr_backbone:g} --weights finetune --train-percent {percent}) "
            "+ evaluate.py, cfg.py"
        ),
        percent=float(percent),  # script: --train-percent 10 (1 in the comment beside it)
        epochs=20,  # script: --epochs 20
        batch_size=256,  # cfg.py: --bs default 256
        lr_backbone=lr_backbone,  # script: --lr-backbone; evaluate.py: * bs / 256
        lr_head=0.2,  # script: --lr-classifier 0.2; evaluate.py: * bs / 256
        weight_decay=0.0,  # evaluate.py: SGD(param_groups, 0, momentum=0.9, weight_decay=0)
        momentum=0.9,
        nesterov=False,  # torch SGD default
        schedule="step",  # cfg.py: --schedule default 'step' ...
        milestones=(60, 80),  # ... MultiStepLR([60, 80]): never reached in 20 epochs
        gamma=0.1,
        head_init_std=0.01,  # evaluate.py: fc.weight.normal_(0, 0.01), fc.bias.zero_()
        deviations=(
            _BEST_EPOCH,
            "the authors train with DistributedDataParallel, BatchNorm over each GPU's "
            "share of the 256 images; specssl fine-tunes on one device, BatchNorm over all 256",
            "ImageNet: SimCLR's image lists (INTL's src/percent/1percent.txt, 10percent.txt) "
            "are not shipped; pass the one for this percentage with --split-file",
        ),
    )


_FINETUNE = [
    _intl_semisup(f"intl_semisup_{p}pct", p, 0.006, "scripts/ep800.sh") for p in (1, 10)
] + [
    _intl_semisup(
        f"intl_m_semisup_{p}pct",
        p,
        0.004,
        "scripts/ep800_multi-crop_ema.sh (also ep100/ep200/ep400_multi-crop_ema.sh)",
    )
    for p in (1, 10)
]

#: ``specssl eval --preset`` names -> presets (linear-sgd, or knn + linear probe).
EVAL_PRESETS: dict[str, LinearSGDPreset | ProbePreset] = {p.name: p for p in _LINEAR + _PROBE}
#: ``specssl finetune --preset`` names -> presets.
FINETUNE_PRESETS: dict[str, FinetunePreset] = {p.name: p for p in _FINETUNE}


def add_preset_argument(parser, registry: dict[str, _Preset]) -> None:
    """``--preset NAME`` choosing one of ``registry`` (explicit options override its values)."""
    parser.add_argument(
        "--preset",
        type=preset_type(registry),
        metavar="NAME",
        help="a named protocol (explicit options override its values): "
        + ", ".join(registry)
        + " (specssl.eval.protocols)",
    )


def preset_type(registry: dict[str, _Preset]):
    """argparse ``type=`` converter: a name of ``registry`` -> its preset; an unknown name is a
    one-line usage error listing the known ones."""

    def convert(text: str) -> _Preset:
        if text not in registry:
            from argparse import ArgumentTypeError

            raise ArgumentTypeError(
                f"unknown preset {text!r}; choose one of: {', '.join(registry)}"
            )
        return registry[text]

    convert.__name__ = "preset"
    return convert


def record(
    preset: _Preset, resolved: dict[str, Any], overridden: list[str], applied_to: list[str]
) -> dict[str, Any]:
    """The JSON record of a preset: its name, source, own values, the values actually used
    (``resolved``: after explicit flags), the flags that overrode it, where it applied and its
    known deviations from the source code."""
    return {
        "name": preset.name,
        "source": preset.source,
        "preset_values": _jsonable(preset.values()),
        "resolved": _jsonable(resolved),
        "overridden": sorted(overridden),
        "applied_to": applied_to,
        "deviations": list(preset.deviations),
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
