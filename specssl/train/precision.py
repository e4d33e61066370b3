"""``trainer.precision: auto``: bf16 mixed precision where the hardware computes bf16 natively.

* CUDA (``accelerator`` auto/gpu/cuda with a GPU present): ``bf16-mixed`` when
  :func:`torch.cuda.is_bf16_supported` (Ampere and newer), else ``32-true``;
* CPU: ``bf16-mixed`` when the CPU has AMX-BF16 or AVX512-BF16 (the ``amx_bf16`` /
  ``avx512_bf16`` flags of ``/proc/cpuinfo``), else ``32-true`` — elsewhere the CPU has no bf16
  arithmetic and converts to float32 for every product. Speed with native bf16:
  docs/results/cpu_recipe/README.md.

Under ``bf16-mixed`` the backbone, heads and probe run in bf16 autocast; the spectral
transforms and losses promote to float32 (:func:`specssl.spectral.common.full_precision`), and
the kNN and spectrum monitors run outside autocast, in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def on_cuda(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` runs on CUDA (``gpu``/``cuda``, or ``auto`` with a GPU
    present)."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(
    requested: str, accelerator: str, flags: set[str] | None = None
) -> tuple[str, str]:
    """``(precision, reason)``: ``requested`` itself unless it is ``"auto"``, which becomes
    ``"bf16-mixed"`` or ``"32-true"`` as the module docstring says; ``reason`` is one phrase."""
    if requested != "auto":
        return requested, "as configured"
    if on_cuda(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"auto: {torch.cuda.get_device_name()} computes bf16"
        return "32-true", "auto: this GPU has no native bf16"
    have = sorted((cpu_flags() if flags is None else flags) & set(BF16_CPU_FLAGS))
    if have:
        return "bf16-mixed", f"auto: the CPU has {', '.join(have)}"
    return "32-true", "auto: the CPU has no native bf16 (no amx_bf16 / avx512_bf16)"
