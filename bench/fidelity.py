"""How far each knowing difference from the authors' code moves the numbers.

On identical float64 inputs, against the independent transcriptions of the authors'
computations in :mod:`specssl.reference.authors`:

* the library's earlier forms (INTL all-pairs, INTL-M symmetric, CW-RGP per-group centring),
  still available as options: relative error of the loss and of its gradient;
* the default forms (must be ~1e-15);
* numerics we keep on purpose: the coupled Newton–Schulz IterNorm in float32 vs the authors'
  plain iteration in float32 and in half precision (their whitening runs under fp16
  autocast), each against the float64 plain iteration.

Prints a table and writes ``docs/results/fidelity/fidelity.{csv,json}`` (committed records);
docs/fidelity.md quotes them.

    python bench/fidelity.py
"""

from __future__ import annotations

import csv
import json
import platform
from functools import partial
from pathlib import Path

import torch

from specssl.losses import CWRGPLoss, INTLLoss
from specssl.reference.authors import (
    authors_cwrgp,
    authors_intl,
    authors_intl_m,
    authors_iternorm_channel,
)
from specssl.spectral import iternorm

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "fidelity"
F64 = torch.float64


def views(n: int, m: int, d: int, seed: int) -> list[torch.Tensor]:
    """``n`` correlated float64 views ``(m, d)`` (shared anisotropic signal + noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64)
    return [base + 0.3 * torch.randn(m, d, generator=g, dtype=F64) for _ in range(n)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def value_and_grad(fn, zs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    leaves = [z.clone().requires_grad_() for z in zs]
    value = fn(leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)
    return value.detach(), torch.cat([g.flatten() for g in grads])


def compare(name: str, ours, ref, zs) -> dict:
    v, g = value_and_grad(ours, zs)
    rv, rg = value_and_grad(ref, zs)
    return {"case": name, "loss_rel_err": rel(v, rv), "grad_rel_err": rel(g, rg)}


def symmetric(online: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """The earlier INTL-M form: INTL over every ordered (online i, target j != i) pair."""
    pairs = [(i, j) for i in range(len(online)) for j in range(len(online)) if i != j]
    return sum(INTLLoss(T=4)(online[i], targets[j]) for i, j in pairs) / len(pairs)


def cwrgp_recording(zs: list[torch.Tensor], centre: str) -> tuple[torch.Tensor, list]:
    """CW-RGP (g=4, w=64) loss under seed 0 and the permutations it drew, in order."""
    drawn: list[torch.Tensor] = []
    original = torch.randperm

    def recording(n, *args, **kwargs):
        perm = original(n, *args, **kwargs)
        drawn.append(perm.clone())
        return perm

    torch.randperm = recording
    try:
        torch.manual_seed(0)
        return CWRGPLoss(groups=4, w_size=64, centre=centre)(zs), drawn
    finally:
        torch.randperm = original


def loss_rows(m: int = 256, d: int = 512) -> list[dict]:
    rows = []
    for n in (2, 3, 4, 6):
        zs = views(n, m, d, seed=n)
        ref = partial(authors_intl, T=4)
        for pairing in ("anchor", "all_pairs"):
            loss = INTLLoss(T=4, pairing=pairing)
            rows.append(compare(f"INTL {n} views, pairing={pairing}", loss, ref, zs))
    for n in (2, 4):
        zs = views(n, m, d, seed=10 + n)
        targets = [z * 1.1 + 0.05 for z in zs]  # another (EMA) network's embeddings
        ref = partial(lambda vs, t: authors_intl_m(vs[1:], t, 4), t=targets[0])
        ours = partial(lambda vs, t: INTLLoss(T=4).momentum(vs[1:], t), t=targets[0])
        rows.append(compare(f"INTL-M {n} views, view0_target", ours, ref, zs))
        rows.append(
            compare(f"INTL-M {n} views, symmetric", partial(symmetric, targets=targets), ref, zs)
        )
    zs = views(2, 128, 512, seed=20)
    drawn = cwrgp_recording(zs, "global")[1]  # the permutations of the authors' form
    ref = partial(lambda vs, perms: authors_cwrgp(vs, 4, 64, 1, perms), perms=drawn)
    for centre in ("global", "group"):
        ours = partial(lambda vs, c: cwrgp_recording(vs, c)[0], c=centre)
        rows.append(compare(f"CW-RGP g=4, 2 views, centre={centre}", ours, ref, zs))
    return rows


def numerics_rows(m: int = 256, d: int = 2048) -> list[dict]:
    """IterNorm (channel axis) output error against the float64 plain iteration."""
    rows = []
    z = views(1, m, d, seed=30)[0]
    half = torch.float16
    for T in (4, 8):
        exact = authors_iternorm_channel(z, T)
        ours32 = iternorm(z.float(), T, "channel").double()
        plain32 = authors_iternorm_channel(z.float(), T).double()
        try:
            plain16 = authors_iternorm_channel(z.to(half), T).double()
        except RuntimeError:  # half matmul unsupported on this CPU build
            half = torch.bfloat16
            plain16 = authors_iternorm_channel(z.to(half), T).double()
        rows.append(
            {
                "case": f"IterNorm T={T}: ours (coupled NS), float32",
                "out_rel_err": rel(ours32, exact),
            }
        )
        rows.append(
            {"case": f"IterNorm T={T}: authors' plain, float32", "out_rel_err": rel(plain32, exact)}
        )
        rows.append(
            {
                "case": f"IterNorm T={T}: authors' plain, {str(half)[6:]}",
                "out_rel_err": rel(plain16, exact),
            }
        )
    return rows


def main() -> None:
    torch.manual_seed(0)
    losses, numerics = loss_rows(), numerics_rows()
    print(f"{'case':<48} {'loss rel err':>13} {'grad rel err':>13}")
    for r in losses:
        print(f"{r['case']:<48} {r['loss_rel_err']:13.3e} {r['grad_rel_err']:13.3e}")
    print(f"\n{'case':<48} {'output rel err':>15}")
    for r in numerics:
        print(f"{r['case']:<48} {r['out_rel_err']:15.3e}")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    (OUT / "fidelity.json").write_text(
        json.dumps({"meta": meta, "losses": losses, "numerics": numerics}, indent=2) + "\n"
    )
    with (OUT / "fidelity.csv").open("w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["case", "loss_rel_err", "grad_rel_err", "out_rel_err"]
        )
        writer.writeheader()
        for r in losses + numerics:
            writer.writerow(r)
    print(f"\nwrote {OUT / 'fidelity.json'} and fidelity.csv")


if __name__ == "__main__":
    main()
