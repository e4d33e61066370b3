"""Scales of the papers' experiments: one grid, three budgets.

* ``smoke``: scikit-learn's digits (built in, no download), width-4 ResNet-18, 128 training
  images, one epoch of two steps — seconds per run; used by the tests.
* ``cpu``: CIFAR-10 (``data.root``), width-16 ResNet-18 with the CIFAR stem, a seeded subset of
  :data:`CPU_SUBSET` training images for :data:`CPU_EPOCHS` epochs (90 steps of 256) and a
  :data:`CPU_VAL_SUBSET`-image test subset. Run times: the wall-time line of each report, e.g.
  docs/results/fig3_iternorm_T/cpu.md.
* ``paper``: the recipe as written (ResNet-18 width 64, full data) for the experiment's paper
  epochs, on a GPU machine.

Every scale evaluates the same way: weighted kNN (k=200, T=0.1) and 5-NN of the backbone
features after the last epoch (the run's kNN monitor) and the spectrum monitor's condition
indicator / stable rank of ``Z`` and ``Ẑ`` after every epoch (every 10 at paper scale).
"""

from __future__ import annotations

from dataclasses import dataclass

SCALES = ("smoke", "cpu", "paper")

#: ``monitor.knn_every`` larger than any run: the kNN monitor evaluates after the last epoch only.
KNN_AT_END = 1_000_000

SMOKE_SUBSET, SMOKE_VAL_SUBSET, SMOKE_EPOCHS, SMOKE_MAX_BATCH = 128, 64, 1, 64
SMOKE_PROJECTOR = (32, 16)  # hidden, output
CPU_SUBSET, CPU_VAL_SUBSET, CPU_EPOCHS, CPU_WIDTH = 7680, 5000, 3, 16
#: Projector of the INTL / IterNorm CPU recipe (configs/cifar10/intl_cpu.yaml): hidden, output.
CPU_INTL_PROJECTOR = (1024, 512)


@dataclass(frozen=True)
class Budget:
    """The scale-dependent part of every run's overrides.

    Args:
        scale: ``"smoke" | "cpu" | "paper"``.
        data_root: directory holding ``cifar-10-batches-py`` (cpu and paper scales).
        epochs: epochs of every run; ``None`` = the scale's default (paper: the experiment's).
        devices: devices per run (paper scale); the per-device batch is the global batch
            divided by it, so the paper's global batch is kept.
    """

    scale: str
    data_root: str | None = None
    epochs: int | None = None
    devices: int = 1

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")

    def epochs_of(self, paper_epochs: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return {"smoke": SMOKE_EPOCHS, "cpu": CPU_EPOCHS, "paper": paper_epochs}[self.scale]

    def batch_of(self, batch_size: int) -> int:
        """The global batch actually used: smoke caps it at :data:`SMOKE_MAX_BATCH`."""
        return min(batch_size, SMOKE_MAX_BATCH) if self.scale == "smoke" else batch_size

    def overrides(
        self,
        *,
        batch_size: int,
        paper_epochs: int,
        spectrum: bool = True,
        spectrum_samples: int | None = None,
    ) -> list[str]:
        """``key=value`` overrides of a recipe for this scale (point overrides go after them).

        ``batch_size`` is the global batch; ``spectrum=False`` turns the spectrum monitor off
        (e.g. embeddings too wide for a ``d x d`` eigendecomposition on a CPU).
        """
        batch = self.batch_of(batch_size)
        if batch % self.devices:
            raise ValueError(f"batch size {batch} is not divisible by {self.devices} devices")
        epochs = self.epochs_of(paper_epochs)
        every = 10 if self.scale == "paper" else 1
        common = [
            f"data.batch_size={batch}",  # the global batch: split over the devices
            f"trainer.devices={self.devices}",
            f"trainer.max_epochs={epochs}",
            "trainer.max_steps=-1",
            "trainer.enable_progress_bar=false",
            f"monitor.knn_every={KNN_AT_END}",
            "monitor.knn_on_init=false",
            "monitor.knn_k=[200,5]",
            f"monitor.spectrum_every={every if spectrum else 0}",
            "monitor.checkpoint_every=1",
        ]
        samples = {"smoke": 128, "cpu": spectrum_samples or 2048}.get(self.scale, spectrum_samples)
        if samples is not None:
            common.append(f"monitor.spectrum_samples={samples}")
        if self.scale == "smoke":
            hidden, out = SMOKE_PROJECTOR
            return [
                "data.name=digits",
                "data.root=null",
                "data.views=digits",
                f"data.subset={SMOKE_SUBSET}",
                f"data.val_subset={SMOKE_VAL_SUBSET}",
                "data.num_workers=0",
                "data.augment_on_device=true",
                "backbone.width=4",
                f"method.proj_hidden_dim={hidden}",
                f"method.proj_output_dim={out}",
                "optim.warmup_epochs=0",
                "trainer.log_every_n_steps=1",
                "monitor.spectrum_plots=false",
                *common,
            ]
        root = [f"data.root={self.data_root}"] if self.data_root else []
        if self.scale == "cpu":
            return [
                "data.name=cifar10",
                *root,
                "data.views=cifar",
                f"data.subset={CPU_SUBSET}",
                f"data.val_subset={CPU_VAL_SUBSET}",
                "data.num_workers=0",
                "data.augment_on_device=true",
                f"backbone.width={CPU_WIDTH}",
                "optim.warmup_epochs=0.5",
                "trainer.log_every_n_steps=10",
                *common,
            ]
        return [*root, "data.subset=null", "data.val_subset=null", *common]

    def describe(self, paper_epochs: int) -> str:
        """One line for the report: what this scale trains on."""
        epochs = self.epochs_of(paper_epochs)
        if self.scale == "smoke":
            return (
                f"smoke: digits, {SMOKE_SUBSET} training / {SMOKE_VAL_SUBSET} test images, "
                f"width-4 ResNet-18, {epochs} epoch(s) — a pipeline check, not a result"
            )
        if self.scale == "cpu":
            return (
                f"cpu: CIFAR-10, seeded {CPU_SUBSET}-image training subset (the kNN bank) and "
                f"{CPU_VAL_SUBSET}-image test subset, width-{CPU_WIDTH} ResNet-18 (CIFAR stem), "
                f"{epochs} epochs (measured run times: the wall-time line below)"
            )
        return f"paper: the recipe's data and network in full, {epochs} epochs"


__all__ = [
    "CPU_EPOCHS",
    "CPU_INTL_PROJECTOR",
    "CPU_SUBSET",
    "CPU_VAL_SUBSET",
    "KNN_AT_END",
    "SCALES",
    "Budget",
]
