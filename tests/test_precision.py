"""Mixed precision, memory format and compilation: ``trainer.precision`` (incl. ``auto``),
``trainer.channels_last`` and ``trainer.compile`` through the real training engine."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import yaml
from helpers import TINY_RUN

from specssl.train.config import load_config
from specssl.train.precision import cpu_flags, resolve_precision
from specssl.train.run import format_summary, pretrain

QUIET = ["monitor.knn_every=0", "monitor.knn_on_init=false", "monitor.spectrum_every=0"]


def tiny(tmp_path, *extra: str):
    args = [*TINY_RUN, *QUIET, "trainer.max_epochs=1", f"output_dir={tmp_path}", "run_name=run"]
    return load_config(None, [*args, *extra])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "amx_bf16", "amx_tile"}, "bf16-mixed"),
        ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
        ({"avx2", "avx512f"}, "32-true"),
        (set(), "32-true"),
    ],
)
def test_auto_precision_picks_bf16_only_where_the_cpu_computes_it(flags, expected):
    precision, reason = resolve_precision("auto", "cpu", flags)
    assert precision == expected and reason.startswith("auto: ")
    assert resolve_precision("16-mixed", "cpu", flags) == ("16-mixed", "as configured")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 amx_bf16\nbogomips\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


class _Dtypes(L.Callback):
    """Records the dtype of the embedding and of the loss of the first step."""

    def __init__(self) -> None:
        self.seen: dict[str, torch.dtype] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.seen:
            self.seen = {
                "embedding": pl_module._last_finite[1].dtype,
                "loss": outputs["loss"].dtype,
            }


#: One method per family: whitening (INTL, CW-RGP), contrastive (SimCLR, MoCo v2),
#: redundancy reduction (Barlow Twins), siamese with predictor (BYOL), clustering (SwAV),
#: self-distillation (DINO).
FAMILIES = ["intl", "cwrgp", "simclr", "mocov2", "barlow_twins", "byol", "swav", "dino"]


@pytest.mark.parametrize("method", FAMILIES)
def test_bf16_mixed_trains_every_method_family_with_float32_losses(tmp_path, method):
    dtypes = _Dtypes()
    extra = ["method.loss={groups: 2}"] if method == "cwrgp" else []
    cfg = tiny(tmp_path, f"method.name={method}", "trainer.precision=bf16-mixed", *extra)
    result = pretrain(cfg, logger=False, extra_callbacks=[dtypes])
    assert result.steps == 4 and result.extra["precision"] == "bf16-mixed"
    assert dtypes.seen["embedding"] == torch.bfloat16  # the networks ran under bf16 autocast
    assert dtypes.seen["loss"] == torch.float32  # the loss was computed in float32


def test_auto_precision_is_resolved_printed_and_saved(tmp_path, monkeypatch):
    import specssl.train.precision as precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    result = pretrain(tiny(tmp_path, "trainer.precision=auto"), logger=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true"
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["precision"] == "32-true" and "no native bf16" in record["precision_reason"]
    assert "precision: 32-true (auto: the CPU has no native bf16" in format_summary(result)


def test_channels_last_trains_with_channels_last_weights(tmp_path):
    from specssl.train.run import build_run

    cfg = tiny(tmp_path, "trainer.channels_last=true")
    _, module = build_run(cfg)
    weight = module.backbone.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and weight.stride()[1] == 1
    result = pretrain(cfg, logger=False)
    assert result.steps == 4


@pytest.mark.slow
def test_compiled_backbone_trains_and_keeps_its_checkpoint_keys(tmp_path):
    result = pretrain(tiny(tmp_path, "trainer.compile=true"), logger=False)
    assert result.steps == 4
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert "method.backbone.conv1.weight" in state["state_dict"]
    assert not any("_orig_mod" in k for k in state["state_dict"])
