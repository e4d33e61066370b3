"""Bad files, full disks, missing networks and diverging runs: one clear line each, and the
diagnosis of a divergence says what broke first and which checkpoint is still good."""

from __future__ import annotations

import errno
import socket

import lightning as L
import pytest
import torch
from helpers import TINY_RUN
from torch import nn

from specssl.cli import main
from specssl.losses import LossResult, SSLLoss
from specssl.train.callbacks import CheckpointWriteError
from specssl.train.config import ConfigError, load_config
from specssl.train.module import TrainingDivergedError
from specssl.train.run import pretrain
from specssl.train.rundir import checkpoint_health

QUIET = ["monitor.knn_every=0", "monitor.knn_on_init=false", "monitor.spectrum_every=0"]


def tiny(tmp_path, *extra: str):
    return load_config(None, [*TINY_RUN, *QUIET, f"output_dir={tmp_path}", "run_name=run", *extra])


# ------------------------------------------------------------------------ image folders
def _image_folder(root, per_class: int = 40):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for label in ("a", "b"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 255, (32, 32, 3), generator=gen, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")
    (root / "test").symlink_to(root / "train")
    (root / "train" / "a" / "empty.png").write_bytes(b"")
    (root / "train" / "b" / "corrupt.png").write_bytes(b"not a png at all" * 10)


def _imagefolder_run(tmp_path, *extra: str):
    return tiny(
        tmp_path,
        "data.name=imagefolder",
        f"data.root={tmp_path / 'images'}",
        "data.subset=null",
        "data.val_subset=null",
        "data.views=cifar",
        "trainer.max_epochs=2",
        *extra,
    )


def test_empty_and_undecodable_images_never_stop_a_run(tmp_path):
    """An empty file is left out when the folder is scanned; a corrupt one is skipped with a
    warning naming it when the shuffle reaches it (without: a mid-epoch traceback)."""
    _image_folder(tmp_path / "images")
    with pytest.warns(UserWarning) as record:
        result = pretrain(_imagefolder_run(tmp_path), logger=False)
    assert result.steps == 2  # 81 usable images, batch 64, 2 epochs
    messages = [str(w.message) for w in record]
    assert any("left out 1 empty (zero-byte) files" in m and "empty.png" in m for m in messages)
    assert any("skipped undecodable image" in m and "corrupt.png" in m for m in messages)


def test_validate_images_leaves_undecodable_files_out_up_front(tmp_path):
    _image_folder(tmp_path / "images")
    with pytest.warns(UserWarning, match=r"left out 1 undecodable images of 81.*corrupt\.png"):
        result = pretrain(_imagefolder_run(tmp_path, "data.validate_images=true"), logger=False)
    assert result.steps == 2


# ------------------------------------------------------------------------ disk and network
def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import specssl.train.callbacks as callbacks

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"x" * 1000)  # part of the file reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(callbacks.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as err:
        pretrain(tiny(tmp_path, "trainer.max_epochs=1"), logger=False)
    text = str(err.value)
    assert "No space left on device" in text and "partial file was removed" in text
    assert "\n" not in text
    assert list((tmp_path / "run" / "checkpoints").glob("*.tmp*")) == []


def test_the_command_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    import specssl.train.callbacks as callbacks

    def full_disk(obj, fh, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(callbacks.torch, "save", full_disk)
    args = [*TINY_RUN, *QUIET, f"output_dir={tmp_path}", "run_name=run", "trainer.max_epochs=1"]
    assert main(["pretrain", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("specssl pretrain: cannot write checkpoint") and "\n" not in err


def test_too_little_disk_for_a_checkpoint_is_caught_before_the_first_step(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(ConfigError, match=r"^disk: 0\.0 MiB free in .* checkpoints need about"):
        pretrain(tiny(tmp_path), logger=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_download_without_a_network_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    cfg = tiny(
        tmp_path, "data.name=cifar10", f"data.root={tmp_path / 'data'}", "data.download=true"
    )
    with pytest.raises(ConfigError) as err:
        pretrain(cfg, logger=False)
    text = str(err.value)
    assert "download of cifar10" in text and "put the extracted cifar-10-batches-py" in text
    assert "\n" not in text and not (tmp_path / "run" / "config.yaml").exists()


# ------------------------------------------------------------------------ --print-config
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.name=cwrgp", "method.loss={groups: 3}"], "groups=3 must be a positive divisor"),
        (["data.name=cifar11"], "unknown dataset 'cifar11'"),
        (["method.options={pairing: x}"], "method.options.pairing"),
    ],
)
def test_print_config_validates_what_a_run_would(tmp_path, capsys, overrides, message):
    args = [*TINY_RUN, f"output_dir={tmp_path}", *overrides]
    assert main(["pretrain", "--print-config", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == "" and "Traceback" not in captured.err


# ------------------------------------------------------------------------ divergence
class _Poison(L.Callback):
    """From optimiser step ``step`` on, poisons one stage of the training step."""

    def __init__(self, step: int, stage: str) -> None:
        self.step, self.stage = step, stage

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        if self.stage == "weights":
            with torch.no_grad():
                pl_module.backbone.conv1.weight.fill_(float("nan"))
        elif self.stage == "input":
            pl_module.augment = _InfInSecondView(pl_module.augment)
        elif self.stage == "loss term":
            pl_module.method.loss_fn = _NaNTraceLoss()


class _InfInSecondView(nn.Module):
    """The training augmentation with one pixel of the second view set to +inf."""

    def __init__(self, augment: nn.Module) -> None:
        super().__init__()
        self.inner = augment

    def forward(self, images):
        views = self.inner(images)
        views[1][0, 0, 0, 0] = float("inf")
        return views


class _NaNTraceLoss(SSLLoss):
    """A loss whose ``trace`` term is NaN while the embeddings are finite."""

    def compute(self, zs):
        terms = {"mse": torch.tensor(0.5), "trace": torch.tensor(float("nan"))}
        return LossResult(sum(z.sum() for z in zs) * float("nan"), terms)


@pytest.mark.parametrize(
    ("stage", "named"),
    [
        ("weights", "the first non-finite tensor is the backbone output"),
        ("input", "the first non-finite tensor is the input"),
        ("loss term", "the first non-finite tensor is the loss term 'trace'"),
    ],
)
def test_divergence_names_the_first_non_finite_tensor(tmp_path, stage, named):
    with pytest.raises(TrainingDivergedError) as info:
        pretrain(
            tiny(tmp_path, "trainer.max_epochs=3"),
            logger=False,
            extra_callbacks=[_Poison(6, stage)],
        )
    err = info.value
    assert named in str(err) and (err.step, err.epoch) == (6, 1)
    assert ("non-finite weights: " in str(err)) == (stage == "weights")
    if stage == "weights":
        assert "first method.backbone.conv1.weight" in str(err)
    assert "last finite embedding: step 5, condition_indicator=" in str(err)
    assert err.checkpoint is not None and err.checkpoint.endswith("last.ckpt")
    assert "last good checkpoint: " in str(err) and "step 4, finite weights" in str(err)


def test_divergence_before_any_checkpoint_says_there_is_none(tmp_path):
    with pytest.raises(TrainingDivergedError) as info:
        pretrain(tiny(tmp_path), logger=False, extra_callbacks=[_Poison(2, "weights")])
    assert info.value.checkpoint is None
    assert "no checkpoint was written before the divergence" in str(info.value)
    assert "last good checkpoint" not in str(info.value)


def test_a_checkpoint_is_good_only_with_finite_weights_and_a_finite_loss(tmp_path):
    pretrain(tiny(tmp_path, "trainer.max_epochs=1"), logger=False)
    path = tmp_path / "run" / "checkpoints" / "epoch0000.ckpt"
    good, reason = checkpoint_health(path)
    assert good and "step 4, finite weights" in reason and "loss " in reason
    ckpt = torch.load(path, weights_only=False)
    ckpt["specssl_train_loss"] = float("inf")
    torch.save(ckpt, tmp_path / "inf_loss.ckpt")
    assert checkpoint_health(tmp_path / "inf_loss.ckpt") == (
        False,
        "step 4: training loss inf not finite",
    )
    ckpt["specssl_train_loss"] = 1.0
    first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][first].view(-1)[0] = float("nan")
    torch.save(ckpt, tmp_path / "nan_weight.ckpt")
    good, reason = checkpoint_health(tmp_path / "nan_weight.ckpt")
    assert not good and f"(first {first})" in reason
    (tmp_path / "broken.ckpt").write_bytes(b"garbage")
    assert checkpoint_health(tmp_path / "broken.ckpt")[0] is False
