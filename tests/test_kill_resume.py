"""Fault injection: a run killed at any instant of its checkpoint writes resumes to the same end.

A forked child trains a tiny run and dies (``os._exit``, no clean-up, like ``kill -9``) right
before or right after its k-th filesystem operation of the checkpoint machinery (the
temporary-file ``os.replace``, the removal of the previous epoch file, the new ``last.ckpt``
link and its replacement), or half-way through writing a checkpoint file. After each death
``--resume`` (``resume="last"``) must continue from the newest complete checkpoint — or, when
none was complete yet, say so in one line — and the run must end with the weights of the
uninterrupted run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from specssl.train.config import ConfigError, load_config
from specssl.train.run import pretrain

EPOCHS = 6
TINY = [
    "data.name=digits",
    "data.batch_size=32",
    "data.subset=64",
    "data.val_subset=32",
    "backbone.width=2",
    "method.proj_hidden_dim=16",
    "method.proj_output_dim=8",
    "trainer.enable_progress_bar=false",
    f"trainer.max_epochs={EPOCHS}",
    "monitor.knn_every=0",
    "monitor.knn_on_init=false",
    "monitor.spectrum_every=0",
    "monitor.online_probe=false",
    "optim.warmup_epochs=0",
]
FS_OPS = ("replace", "remove", "unlink", "symlink", "rename")
DIE = 17


def config(root: Path, name: str):
    return load_config(None, [*TINY, f"output_dir={root}", f"run_name={name}"])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return {k: v for k, v in ckpt["state_dict"].items() if v.is_floating_point()}


def _die_at(k: int, mid_write: bool, root: str, name: str) -> None:
    """Child: train, dying at instant ``k`` (before/after fs op ``k // 2``, or half-way
    through the ``k``-th checkpoint write when ``mid_write``)."""
    torch.set_num_threads(1)
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == k:
            os._exit(DIE)

    def wrap(fn):
        def inner(*args, **kwargs):
            tick()
            out = fn(*args, **kwargs)
            tick()
            return out

        return inner

    if mid_write:
        original_save = torch.save

        def half_save(obj, f, *args, **kwargs):
            count[0] += 1
            if count[0] == k:
                import io

                buf = io.BytesIO()
                original_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os._exit(DIE)
            return original_save(obj, f, *args, **kwargs)

        torch.save = half_save
    else:
        for op in FS_OPS:
            setattr(os, op, wrap(getattr(os, op)))
    pretrain(config(Path(root), name), logger=False)
    os._exit(0)


def _run_child(k: int, mid_write: bool, root: Path, name: str) -> int:
    proc = mp.get_context("fork").Process(target=_die_at, args=(k, mid_write, str(root), name))
    proc.start()
    proc.join(300)
    assert proc.exitcode is not None, "child hung"
    return proc.exitcode


@pytest.mark.slow
def test_a_run_killed_at_any_checkpoint_instant_resumes_to_the_uninterrupted_end(tmp_path):
    torch.set_num_threads(1)
    reference = weights(pretrain(config(tmp_path, "reference"), logger=False).run_dir)
    instants = [(k, False) for k in range(1, 2 * 4 * EPOCHS + 3)]  # 4 fs ops per checkpoint
    instants += [(k, True) for k in range(1, EPOCHS + 1)]
    killed = 0
    for k, mid_write in instants:
        name = f"{'mid' if mid_write else 'op'}{k}"
        code = _run_child(k, mid_write, tmp_path, name)
        killed += code == DIE
        run_dir = tmp_path / name
        try:
            result = pretrain(config(tmp_path, name), resume="last", logger=False)
        except ConfigError as err:  # killed before any checkpoint was complete
            assert "no checkpoint in" in str(err) and "\n" not in str(err), (name, err)
            assert not list((run_dir / "checkpoints").glob("epoch*.ckpt")), name
            result = pretrain(config(tmp_path, name), logger=False)
        assert result.steps == 2 * EPOCHS, name
        assert not list((run_dir / "checkpoints").glob("*.tmp*")), name  # partial writes gone
        got = weights(run_dir)
        assert got.keys() == reference.keys()
        for key, value in reference.items():
            torch.testing.assert_close(got[key], value, atol=0, rtol=0, msg=f"{name}: {key}")
    assert killed >= 50, f"only {killed} of {len(instants)} instants killed the child"
