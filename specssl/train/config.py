"""Typed run configuration: YAML recipes map 1:1 onto these dataclasses.

``load_config(path, overrides)`` merges defaults <- YAML file <- ``key.sub=value`` overrides with
OmegaConf structured configs, so an unknown key or a wrong type fails *before* training with a
one-line :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from specssl.core.errors import ConfigError
from specssl.methods.config import MethodConfig


@dataclass
class DataConfig:
    name: str = "digits"  # cifar10 | cifar100 | stl10 | imagefolder | digits
    root: str | None = None  # dataset directory (not needed for digits)
    download: bool = False  # download when the data is missing (needs a network)
    # imagefolder: decode every image before training and leave out those that fail (empty
    # files are always left out; a file failing mid-epoch is skipped with a warning)
    validate_images: bool = False
    train_split: str = "train"  # stl10: "train+unlabeled" for pretraining
    val_split: str = "test"
    subset: int | None = None  # pretrain on this many training images (seeded)
    val_subset: int | None = None  # evaluate on this many test images (seeded)
    batch_size: int = 256  # global: split over trainer.devices x trainer.num_nodes processes
    num_workers: int = 0
    # Augmentation preset: a name of specssl.data.presets.PRESETS (auto | cifar | imagenet |
    # digits | intl_cifar | wmse_cifar | solo_cifar_byol | ...); auto = digits on digits,
    # imagenet on imagefolder, cifar otherwise.
    views: str = "auto"
    num_views: int = 2  # large views (a preset with fixed views, e.g. intl_multicrop: its count)
    num_small_crops: int = 0  # multi-crop: extra small views (SwAV/DINO style)
    small_crop_size: int | None = None  # default 3/7 of the large crop (96 for 224)
    augment_on_device: bool = True  # batched tensor augmentation on the training device
    # Per-view solarization of the presets auto / cifar / imagenet (the others set their own:
    # override them with `augment`).
    solarize_p: list[float] = field(default_factory=lambda: [0.0, 0.2])
    # Per-view overrides of the preset's AugmentConfig fields (specssl.data.views), before
    # multi-crop: [] = the preset as is; one mapping = every view; else one per view.
    # E.g. [{interpolation: bicubic}] or [{solarize_p: 0.0}, {solarize_p: 0.2}].
    augment: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BackboneConfig:
    # resnet18 | resnet34 | resnet50 (specssl's ResNets), timm:<model> (any timm model, e.g.
    # timm:vit_small_patch16_224), tv:<model> (a torchvision classification model), or a preset
    # of specssl.models.BACKBONE_PRESETS (e.g. vit_tiny_patch4_32: a ViT for 32x32 images)
    name: str = "resnet18"
    cifar_stem: bool = True  # specssl ResNets only (ignored by timm / torchvision models)
    # ResNets: base width (64 = standard; 16/32 for CPU-scale runs); timm ViTs: per-head width
    # (embed_dim = num_heads x width; 64 = the model as timm defines it); others: 64 only
    width: int = 64
    zero_init_residual: bool = False  # specssl ResNets only
    # timm / torchvision models: constructor arguments passed through (override a preset's),
    # e.g. {drop_path_rate: 0.1}; specssl ResNets take none
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw | lars
    lr: float = 0.3  # base lr for batch 256; scaled by global_batch / 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    min_lr_ratio: float = 0.0
    exclude_bias_and_norm: bool = False  # no weight decay on biases and norm layers
    # With exclude_bias_and_norm: no weight decay either on what a module's no_weight_decay()
    # names (timm ViTs: pos_embed, cls_token, reg_token, dist_token)
    exclude_tokens: bool = True
    # Weight decay cosine from weight_decay (step 0) to this value (last step), e.g. DINO's
    # 0.04 -> 0.4; null = constant weight_decay
    final_weight_decay: float | None = None
    lars_eta: float = 0.02  # LARS trust coefficient
    lars_clip_lr: bool = False  # LARS step min(trust, lr) instead of lr * trust (solo-learn)
    classifier_lr: float = 0.1  # online linear probe (own param group, no weight decay)
    # Method sub-modules (e.g. [predictor]) trained at the constant base lr: no warm-up or decay
    static_lr: list[str] = field(default_factory=list)


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1
    max_time: str | None = None  # "DD:HH:MM:SS"
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    # 32-true | bf16-mixed | 16-mixed | auto (bf16-mixed where the hardware computes bf16
    # natively, else 32-true: specssl.train.precision)
    precision: str = "32-true"
    channels_last: bool = False  # backbone weights and images in channels_last memory format
    compile: bool = False  # torch.compile the backbone (nn.Module.compile: same state-dict keys)
    sync_batchnorm: bool = True
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    limit_train_batches: int | float = 1.0  # an int counts batches, a float a fraction (Lightning)
    deterministic: bool = False
    enable_progress_bar: bool = True


@dataclass
class MonitorConfig:
    knn_every: int = 1  # epochs between kNN evaluations (0 = never)
    knn_k: list[int] = field(default_factory=lambda: [200, 5])
    knn_temperature: float = 0.1
    knn_train_subset: int | None = None  # memory-bank size (seeded); None = full train split
    knn_on_init: bool = True  # also evaluate the randomly initialised network
    online_probe: bool = True
    spectrum_every: int = 1  # epochs between spectrum snapshots (0 = never)
    spectrum_samples: int = 1024
    spectrum_plots: bool = True
    checkpoint_every: int = 1  # epochs between checkpoints
    # Collapse alarm (specssl.train.collapse), from the spectrum monitor's snapshots: off | warn
    # (print the evidence: metric, its trajectory, the spectrum plot) | stop (also end the run
    # at the first checkpointed epoch, checkpoint kept). Fires when collapse_metric is below
    # collapse_threshold in collapse_patience consecutive snapshots from epoch collapse_after
    # on. Values from measured runs: docs/results/collapse_alarm/README.md
    collapse_alarm: str = "off"
    collapse_metric: str = "z/effective_rank"  # any "<which>/<name>" key the monitor logs
    collapse_threshold: float = 1.2
    collapse_patience: int = 2
    collapse_after: int = 4  # first epoch counted (early epochs pass through a narrow spectrum)

    def __post_init__(self) -> None:
        # YAML reads an unquoted off / on as a boolean: off means off, on means warn
        alarm = str(self.collapse_alarm).lower()
        self.collapse_alarm = {"false": "off", "true": "warn"}.get(alarm, alarm)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None  # default: <data.name>-<method.name>


def _one_line(err: OmegaConfBaseException) -> str:
    msg = str(err).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"config key '{key}': {msg}" if key else f"config: {msg}"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML recipe at ``path`` <- ``["a.b=value", ...]`` overrides -> :class:`Config`.

    An override ``method.name=<other>`` that switches the recipe's method also drops the
    recipe's ``method.loss`` and ``method.options`` (they are the recipe method's own).

    Raises :class:`ConfigError` (one line, naming the key or file) on unknown keys, wrong types,
    a missing or unparsable file, or a malformed override.
    """
    schema = OmegaConf.structured(Config)
    layers = [schema]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(
                f"config file {path} is not valid YAML: {err}".splitlines()[0]
            ) from err
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
        layers.append(OmegaConf.create(_without_other_methods_keys(raw, overrides or [])))
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
    try:
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from err
    validate(cfg)
    return cfg


#: Keys of a recipe's ``method`` section that belong to its method alone.
METHOD_SPECIFIC_KEYS = ("loss", "options")


def _without_other_methods_keys(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The recipe ``raw`` without its ``method.loss`` / ``method.options`` when an override
    switches ``method.name`` to another method: those keys are the recipe method's (e.g. INTL's
    ``T``), so the new method starts from its own defaults, and only the user's own
    ``method.loss...`` overrides apply to it."""
    method = raw.get("method")
    names = [item.split("=", 1)[1].strip() for item in overrides if item.startswith("method.name=")]
    if not isinstance(method, dict) or not names or names[-1] == method.get("name"):
        return raw
    kept = {k: v for k, v in method.items() if k not in METHOD_SPECIFIC_KEYS}
    return {**raw, "method": kept}


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express; one-line :class:`ConfigError`."""
    checks = [
        (cfg.data.batch_size >= 2, "data.batch_size", "must be >= 2"),
        (cfg.data.num_views >= 2, "data.num_views", "must be >= 2"),
        (cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0"),
        (cfg.backbone.width >= 1, "backbone.width", "must be >= 1"),
        (cfg.method.proj_output_dim >= 1, "method.proj_output_dim", "must be >= 1"),
        (cfg.optim.lr > 0, "optim.lr", "must be > 0"),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0"),
        (
            cfg.optim.final_weight_decay is None or cfg.optim.final_weight_decay >= 0,
            "optim.final_weight_decay",
            "must be >= 0 (or null)",
        ),
        (cfg.optim.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0"),
        (
            cfg.trainer.max_epochs >= 1 or cfg.trainer.max_steps > 0,
            "trainer.max_epochs",
            "must be >= 1 (or set trainer.max_steps)",
        ),
        (cfg.monitor.spectrum_samples >= 2, "monitor.spectrum_samples", "must be >= 2"),
        (
            cfg.monitor.collapse_alarm in ("off", "warn", "stop"),
            "monitor.collapse_alarm",
            "must be off, warn or stop",
        ),
        (cfg.monitor.collapse_patience >= 1, "monitor.collapse_patience", "must be >= 1"),
        (cfg.monitor.collapse_after >= 1, "monitor.collapse_after", "must be >= 1"),
        (0.0 <= cfg.method.base_tau <= 1.0, "method.base_tau", "must be in [0, 1]"),
    ]
    for ok, key, rule in checks:
        if not ok:
            raise ConfigError(f"config key '{key}': {rule}")


def to_dict(cfg: Config) -> dict[str, Any]:
    return asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (the exact run can be repeated with ``--config``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
