"""INTL paper, Section 3.3: is eigendecomposition-based ST numerically unstable in SSL?

The paper: "One problem of ST using power functions g(λ) = λ^-p (p is around 0.5) is the
numerical instability when calculating eigenvalues λ and eigenvectors U using
eigen-decomposition if the covariance matrix is ill-conditioned" — the motivation for IterNorm.
This experiment measures it in two parts.

**Part 1, prescribed spectra.** Batch-axis embeddings ``z: (m, d) = (128, 64)`` (the ST-power
recipe's sub-batch of 128 rows of a 64-d embedding) whose covariance has a prescribed spectrum,
from identical eigenvalues (condition 1) through log-uniform spectra of condition 1e1 .. 1e12
to a near-degenerate collapsed tail and an exactly rank-deficient covariance. For each, in
float32 and float64:

* ``eig autograd``: ZCA (``p = 0.5``) as the whitening-loss authors write it,
  ``Ẑ = Z_c U diag(λ^{-1/2}) U^T`` with ``(λ, U) = eigh(Σ)`` and the gradient by autograd
  through ``eigh`` (whose backward divides by ``λ_i - λ_j``);
* ``eig library``: :func:`specssl.spectral.power_transform` with ``p = 0.5`` (Daleckii–Krein
  backward with divided differences, null-space eigenvalues ``<= d eps λ_max`` mapped to 0);
* ``IterNorm T=4``: :func:`specssl.spectral.iternorm` (coupled, the INTL default).

Each output and the gradient of ``L = <G, Ẑ>`` (``G`` a fixed Gaussian) are compared with an
exact float64 reference of the same float32-representable input:

* ZCA: ``Ẑ = sqrt(n - 1) U_x V_x^T`` from the thin SVD ``Z_c = U_x S V_x^T`` (the polar factor:
  no squared condition number, no ``λ_i - λ_j``), and its gradient in closed form,
  ``∂L/∂Z_c = sqrt(n - 1) [Q (B - B^T) + (I - Q Q^T) G H^{-1}]`` with ``Q = U_x V_x^T``,
  ``H^{-1} = V_x S^{-1} V_x^T``, ``B = V_x (K ∘ V_x^T Q^T G V_x) V_x^T``,
  ``K_ij = 1 / (s_i + s_j)`` (sums only), then centred;
* IterNorm: Theorem 1 by a float64 eigendecomposition (``Z_c U f_T(Λ_N) U^T / sqrt(tr Σ)``) and
  the gradient by float64 autograd through Eqn. 3 written out (a polynomial: no division).

A trial is *failed* when ``eigh`` raises, *non-finite* when the output or gradient has a
NaN/Inf. The exactly rank-deficient spectrum has no gradient reference (ZCA is not
differentiable where the rank changes); there only failures and non-finite values count.

**Part 2, a real training.** ST-power (``p = 0.5``, ZCA of 128-row sub-batches on the batch
axis, float64 spectral math: the recipe ``configs/cifar10/st_power.yaml`` at CPU scale)
trained for a few hundred steps; at every step the first 128-row sub-batch of view 0's
embedding is also whitened by each method above in float32 and float64 (a shadow evaluation:
it does not change the training) and the outcome counted; plus a run whose loss is the
autograd-through-eigh float32 ZCA itself (same sub-batches), where a non-finite step is
skipped and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from specssl.experiments import numerics as nx
from specssl.spectral import iternorm, power_transform
from specssl.spectral.iternorm import f_T

NAME = "sec33_eig_instability"
OUT = nx.REPO / "docs" / "results" / NAME
M, D = 128, 64
T_ITERNORM = 4
CONDITIONS = (1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e10, 1e12)
METHODS = ("eig autograd", "eig library", f"IterNorm T={T_ITERNORM}")
PRECISIONS = ("float32", "float64")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: A gradient whose relative error exceeds this counts as wrong.
WRONG = 0.1


@dataclass(frozen=True)
class Spectrum:
    """A named spectrum of ``D`` eigenvalues (max 1); ``rank < D`` means exact zeros."""

    name: str
    values: torch.Tensor

    @property
    def rank(self) -> int:
        return int((self.values > 0).sum())

    @property
    def condition(self) -> float:
        nz = self.values[self.values > 0]
        return float(nz.max() / nz.min())


def spectra(d: int = D) -> list[Spectrum]:
    """Log-uniform spectra of :data:`CONDITIONS`; a collapsed spectrum (d/4 leading
    eigenvalues 1 .. 1e-2, the rest a near-degenerate floor 1e-6 (1 + 1e-6 i)); and an exactly
    rank-deficient one (3d/4 eigenvalues 1 .. 1e-2, d/4 zeros)."""
    out = [Spectrum(f"cond {c:.0e}", nx.logspace_spectrum(d, c)) for c in CONDITIONS]
    lead = torch.logspace(0, -2, d // 4, dtype=torch.float64)
    floor = 1e-6 * (1 + 1e-6 * torch.arange(d - d // 4, dtype=torch.float64))
    out.append(Spectrum("collapsed: floor 1e-6", torch.cat([lead, floor])))
    rank = 3 * d // 4
    lead = torch.logspace(0, -2, rank, dtype=torch.float64)
    out.append(Spectrum(f"rank {rank}/{d}", torch.cat([lead, torch.zeros(d - rank)])))
    return out


# ----------------------------------------------------------------------------- methods


def zca_autograd(z: torch.Tensor) -> torch.Tensor:
    """ZCA of ``z: (m, d)`` on the batch axis as the authors' whitening losses compute it:
    ``Z_c U diag(λ^{-1/2}) U^T`` with autograd through ``torch.linalg.eigh`` (no guard)."""
    xc = z - z.mean(dim=0, keepdim=True)
    sigma = xc.T @ xc / (z.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(sigma)
    return xc @ (evecs * evals.rsqrt()) @ evecs.T


def method_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The transformation ``(m, d) -> (m, d)`` of a :data:`METHODS` entry (batch axis)."""
    if name == "eig autograd":
        return zca_autograd
    if name == "eig library":
        return lambda z: power_transform(z, 0.5, "batch", check_finite=False)
    return lambda z: iternorm(z, T_ITERNORM, "batch", check_finite=False)


# --------------------------------------------------------------------------- references


def zca_reference(z: torch.Tensor, g: torch.Tensor, rank: int | None = None):
    """Exact ZCA output and ``∂<G, Ẑ>/∂z`` of a float64 ``z: (n, c)`` from the polar factor.

    ``rank``: keep the ``rank`` largest singular values (pseudo-inverse semantics for an
    exactly rank-deficient covariance; no gradient then, returns ``None`` for it).
    """
    n = z.shape[0]
    xc = z - z.mean(dim=0, keepdim=True)
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    if rank is not None and rank < s.numel():
        u, s, vh = u[:, :rank], s[:rank], vh[:rank]
        return math.sqrt(n - 1) * u @ vh, None
    v = vh.mT
    q = u @ vh
    k = 1.0 / (s[:, None] + s[None, :])
    a = v.mT @ (q.mT @ g) @ v
    b = v @ (k * a) @ v.mT
    h_inv = (v / s) @ v.mT
    grad_xc = math.sqrt(n - 1) * (q @ (b - b.mT) + (g - q @ (q.mT @ g)) @ h_inv)
    grad = grad_xc - grad_xc.mean(dim=0, keepdim=True)  # through the centring
    return math.sqrt(n - 1) * q, grad


def iternorm_reference(z: torch.Tensor, g: torch.Tensor, T: int = T_ITERNORM):
    """Exact IterNorm_T output of a float64 ``z: (n, c)`` (Theorem 1, eigendecomposition) and
    ``∂<G, Ẑ>/∂z`` by float64 autograd through Eqn. 3 written out (no library code)."""
    xc = z - z.mean(dim=0, keepdim=True)
    sigma = xc.T @ xc / (z.shape[0] - 1)
    trace = torch.trace(sigma)
    evals, evecs = torch.linalg.eigh(sigma / trace)
    out = xc @ ((evecs * f_T(evals, T)) @ evecs.T) / trace.sqrt()
    zz = z.detach().clone().requires_grad_(True)
    xc = zz - zz.mean(dim=0, keepdim=True)
    sigma = xc.T @ xc / (z.shape[0] - 1)
    trace = torch.trace(sigma)
    sigma_n = sigma / trace
    p = torch.eye(z.shape[1], dtype=z.dtype)
    for _ in range(T):
        p = 1.5 * p - 0.5 * p @ p @ p @ sigma_n
    (grad,) = torch.autograd.grad((g * (xc @ p / trace.sqrt())).sum(), zz)
    return out, grad


def reference(method: str, z: torch.Tensor, g: torch.Tensor, rank: int | None):
    return iternorm_reference(z, g) if method.startswith("IterNorm") else zca_reference(z, g, rank)


# ------------------------------------------------------------------------------- trials


def evaluate(
    method: str, z: torch.Tensor, g: torch.Tensor, want: torch.Tensor, want_grad
) -> dict[str, Any]:
    """Run ``method`` on ``z`` (its dtype) with the gradient of ``<G, Ẑ>``; compare."""
    zz = z.detach().clone().requires_grad_(True)
    try:
        out = method_fn(method)(zz)
        (grad,) = torch.autograd.grad((g.to(out.dtype) * out).sum(), zz)
    except torch.linalg.LinAlgError as err:
        return {"status": "failed", "error": str(err).splitlines()[0][:120]}
    finite = bool(torch.isfinite(out).all()) and bool(torch.isfinite(grad).all())
    rec: dict[str, Any] = {"status": "ok" if finite else "non-finite"}
    rec["forward_error"] = nx.finite_or_none(nx.relative_error(out.detach(), want))
    if want_grad is not None:
        rec["grad_error"] = nx.finite_or_none(nx.relative_error(grad, want_grad))
    return rec


def run_spectra(seeds: list[int]) -> list[dict[str, Any]]:
    """Part 1: one record per (spectrum, seed, method, precision)."""
    records = []
    for spec in spectra():
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            z32 = nx.axis_embedding(M, D, spec.values, "batch", gen).float()
            g = torch.randn(M, D, generator=gen, dtype=torch.float64)
            z64 = z32.double()
            rank = spec.rank if spec.rank < D else None
            for method in METHODS:
                want, want_grad = reference(method, z64, g, rank)
                for precision in PRECISIONS:
                    rec = evaluate(method, z64.to(DTYPES[precision]), g, want, want_grad)
                    rec.update(spectrum=spec.name, condition=spec.condition, rank=spec.rank)
                    rec.update(seed=seed, method=method, precision=precision)
                    records.append(rec)
    return records


# ----------------------------------------------------------------------- real training


def shadow(z: torch.Tensor, g: torch.Tensor) -> list[dict[str, Any]]:
    """Every method and precision on one real float32 embedding ``z: (M, D)``."""
    z64 = z.detach().double()
    xc = z64 - z64.mean(0)
    evals = torch.linalg.eigvalsh(xc.T @ xc / (z.shape[0] - 1))
    condition = float(evals.max() / evals.min()) if float(evals.min()) > 0 else math.inf
    out = []
    for method in METHODS:
        want, want_grad = reference(method, z64, g, None)
        for precision in PRECISIONS:
            rec = evaluate(method, z64.to(DTYPES[precision]), g, want, want_grad)
            rec.update(method=method, precision=precision, condition=condition)
            out.append(rec)
    return out


def eig_autograd_loss(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """The ST-power loss of two views ``(m, d)`` with :func:`zca_autograd` in float32 on
    sub-batches of :data:`M` consecutive rows (W-MSE's slicing; the loader has shuffled the
    rows): ``mean over sub-batches of 2 - 2 mean_i cos(Ẑ_1[i], Ẑ_2[i])``."""
    z1, z2 = (e.float() for e in embeddings[:2])
    terms = []
    for start in range(0, z1.shape[0] - M + 1, M):
        a, b = (
            torch.nn.functional.normalize(zca_autograd(z[start : start + M]), dim=1)
            for z in (z1, z2)
        )
        terms.append(2 - 2 * (a * b).sum(dim=1).mean())
    return torch.stack(terms).mean()


def train_overrides(data_root: str | None, steps: int, seed: int) -> list[str]:
    """The ST-power recipe at CPU scale (width-16 ResNet-18, CIFAR-10 subset)."""
    from specssl.experiments.budget import Budget

    ovr = Budget("cpu", data_root).overrides(batch_size=256, paper_epochs=1, spectrum=False)
    return [*ovr, f"seed={seed}", f"trainer.max_steps={steps}"]


def train(
    loss: str, steps: int, data_root: str | None, seed: int = 0, shadow_every: int = 1
) -> dict[str, Any]:
    """A short ST-power training; ``loss="library"`` (the recipe's float64 library loss, with
    shadow evaluations) or ``"eig autograd"`` (the authors'-style float32 ZCA as the loss;
    non-finite steps are skipped and counted). Returns a record with per-step lists."""
    from specssl.experiments.command import REPO
    from specssl.train.config import load_config
    from specssl.train.run import build_run

    torch.manual_seed(seed)
    cfg = load_config(
        REPO / "configs" / "cifar10" / "st_power.yaml", train_overrides(data_root, steps, seed)
    )
    dm, module = build_run(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    params = [p for p in module.method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(M, D, generator=gen, dtype=torch.float64)
    module.train()
    steps_done, losses, skipped, shadows, conditions = 0, [], [], [], []
    start = time.perf_counter()
    while steps_done < steps:
        for images, _ in loader:
            if steps_done >= steps:
                break
            views = module.views_of(images)
            out = module.method(views)
            try:
                value = out.loss if loss == "library" else eig_autograd_loss(out.embeddings)
            except torch.linalg.LinAlgError:  # eigh failed: a failed step, counted below
                value = torch.tensor(math.nan)
            if steps_done % shadow_every == 0:
                rows = shadow(out.embeddings[0][:M].detach().float(), g)
                shadows.append({"step": steps_done, "rows": rows})
                conditions.append(rows[0]["condition"])
            opt.zero_grad(set_to_none=True)
            ok = bool(torch.isfinite(value))
            if ok:
                try:
                    value.backward()
                except torch.linalg.LinAlgError:
                    ok = False
                ok = ok and all(
                    bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None
                )
            if ok:
                opt.step()
            else:
                skipped.append(steps_done)
            loss_value = float(value.detach())
            losses.append(loss_value if math.isfinite(loss_value) else None)
            steps_done += 1
    return {
        "loss_mode": loss,
        "steps": steps,
        "seed": seed,
        "skipped_steps": skipped,
        "losses": losses,
        "shadow": shadows,
        "train_wall_s": round(time.perf_counter() - start, 1),
    }


# ------------------------------------------------------------------------------- summary


def rate(n: int, total: int) -> str:
    return f"{n}/{total}" if total else "–"


def summarize(records: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Counts and median errors per ``keys`` group (first-seen order)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for values, runs in groups.items():
        fwd = [math.inf if r.get("forward_error") is None else r["forward_error"] for r in runs]
        has_grad = [r for r in runs if "grad_error" in r or r["status"] == "failed"]
        grads = [math.inf if r.get("grad_error") is None else r["grad_error"] for r in has_grad]
        row = dict(zip(keys, values, strict=True))
        row.update(
            n=len(runs),
            failed=sum(r["status"] == "failed" for r in runs),
            non_finite=sum(r["status"] == "non-finite" for r in runs),
            wrong_grad=sum(e > WRONG for e in grads),
            n_grad=len(has_grad),
            forward=nx.median(fwd),
            grad=nx.median(grads) if grads else None,
        )
        rows.append(row)
    return rows


def training_rows(train_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shadow outcomes per (training, method, precision) over the steps."""
    flat = []
    for tr in train_records:
        for sh in tr["shadow"]:
            for r in sh["rows"]:
                flat.append(r | {"training": tr["loss_mode"]})
    return summarize(flat, ("training", "method", "precision"))


def find(rows: list[dict[str, Any]], **key: Any) -> dict[str, Any]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in key.items())]
    return row


def reading(records: list[dict[str, Any]], train_records: list[dict[str, Any]]) -> list[str]:
    """The numeric sentences of the report, each computed from the records."""
    rows = summarize(records, ("spectrum", "method", "precision"))
    names = list(dict.fromkeys(r["spectrum"] for r in rows))
    n_seeds = rows[0]["n"]
    lines = [f"Part 1: {len(names)} spectra × {n_seeds} seeds per method and precision."]

    def bad(r: dict[str, Any]) -> int:
        return r["failed"] + r["non_finite"]

    for method in METHODS:
        for precision in PRECISIONS:
            mine = [r for r in rows if r["method"] == method and r["precision"] == precision]
            broken = [r for r in mine if bad(r)]
            wrong = [r for r in mine if r["wrong_grad"]]
            text = f"**{method}, {precision}.** "
            if broken:
                text += "Failed or non-finite on " + "; ".join(
                    f"{r['spectrum']} ({rate(bad(r), r['n'])})" for r in broken
                )
            else:
                text += "Never failed and never non-finite"
            text += ". Gradient error > " + f"{WRONG:.0%}" + " on "
            text += (
                "; ".join(f"{r['spectrum']} ({rate(r['wrong_grad'], r['n_grad'])})" for r in wrong)
                if wrong
                else "no spectrum"
            )
            ok_fwd = [r["forward"] for r in mine if math.isfinite(r["forward"])]
            text += (
                f". Median forward error from {nx.fmt(min(ok_fwd))} to {nx.fmt(max(ok_fwd))} "
                "over the spectra where it is finite."
                if ok_fwd
                else "."
            )
            lines.append(text)
    lines.append(
        "IterNorm is compared with its own exact definition (Theorem 1 at T = 4), not with "
        "ZCA: at T = 4 it is an incomplete whitening (small eigenvalues are not brought to "
        "1), so its small errors say that it computes what it defines, in float32 too, "
        "without an eigendecomposition — not that it whitens as ZCA does."
    )
    if train_records:
        lines.append(training_reading(train_records))
    return lines


def training_reading(train_records: list[dict[str, Any]]) -> str:
    rows = training_rows(train_records)
    parts = []
    for tr in train_records:
        conds = [c for sh in tr["shadow"] for c in [sh["rows"][0]["condition"]]]
        finite = [c for c in conds if math.isfinite(c)]
        text = (
            f"**Training with the {tr['loss_mode']} loss** ({tr['steps']} steps, seed "
            f"{tr['seed']}): {len(tr['skipped_steps'])} of {tr['steps']} steps had a "
            "non-finite loss or gradient"
            + (f" (first at step {tr['skipped_steps'][0]})" if tr["skipped_steps"] else "")
            + "; condition number of the shadowed sub-batch covariance from "
            + (f"{min(finite):.3g} to {max(finite):.3g}" if finite else "–")
            + (f" ({len(conds) - len(finite)} singular)" if len(finite) < len(conds) else "")
            + ". On those embeddings: "
        )
        mine = [r for r in rows if r["training"] == tr["loss_mode"]]
        text += "; ".join(
            f"{r['method']} {r['precision']}: {rate(r['failed'] + r['non_finite'], r['n'])} "
            f"failed/non-finite, {rate(r['wrong_grad'], r['n_grad'])} gradients off by > "
            f"{WRONG:.0%}, median gradient error {nx.fmt(r['grad'])}"
            for r in mine
        )
        parts.append(text + ".")
    return "\n\n".join(parts)


def table(records: list[dict[str, Any]]) -> str:
    rows = summarize(records, ("spectrum", "method", "precision"))
    header = [
        "spectrum",
        "κ",
        "method",
        "precision",
        "failed",
        "non-finite",
        f"grad err > {WRONG:.0%}",
        "median forward err",
        "median grad err",
    ]
    conds = {r["spectrum"]: r["condition"] for r in records}
    body = [
        [
            r["spectrum"],
            f"{conds[r['spectrum']]:.3g}",
            r["method"],
            r["precision"],
            rate(r["failed"], r["n"]),
            rate(r["non_finite"], r["n"]),
            rate(r["wrong_grad"], r["n_grad"]) if r["n_grad"] else "– (no reference)",
            nx.fmt(r["forward"]),
            nx.fmt(r["grad"]) if r["grad"] is not None else "–",
        ]
        for r in rows
    ]
    return nx.markdown_table(header, body)


def training_table(train_records: list[dict[str, Any]]) -> str:
    rows = training_rows(train_records)
    header = ["training loss", "method", "precision", "failed", "non-finite",
              f"grad err > {WRONG:.0%}", "median forward err", "median grad err"]  # fmt: skip
    body = [
        [
            r["training"],
            r["method"],
            r["precision"],
            rate(r["failed"], r["n"]),
            rate(r["non_finite"], r["n"]),
            rate(r["wrong_grad"], r["n_grad"]),
            nx.fmt(r["forward"]),
            nx.fmt(r["grad"]) if r["grad"] is not None else "–",
        ]
        for r in rows
    ]
    return nx.markdown_table(header, body)


def report_text(
    meta: dict[str, Any], records: list[dict[str, Any]], train_records: list[dict[str, Any]]
) -> str:
    """The whole markdown report, generated from the records only."""
    seeds = sorted({r["seed"] for r in records})
    parts = [
        "# INTL Section 3.3: numerical instability of eigendecomposition-based ST",
        "",
        "_Generated by `experiments/sec33_eig_instability.py` from `records.json`; every "
        "number below is computed from those records._",
        "",
        "Paper (Section 3.3): ST with g(λ) = λ^-p, p ≈ 0.5, computed by eigendecomposition is "
        "numerically unstable when the covariance is ill-conditioned; IterNorm avoids "
        "computing λ and U. Measured here: ZCA (p = 0.5) through `eigh` with autograd (as the "
        "whitening-loss authors write it), this library's `power_transform` (Daleckii–Krein "
        "backward, null-space mask) and IterNorm T = 4, each in float32 and float64, against "
        "an exact float64 reference of the same input (ZCA: SVD polar factor and its "
        "closed-form gradient; IterNorm: Theorem 1 and float64 autograd of Eqn. 3); "
        "gradient of L = <G, Ẑ> for a fixed Gaussian G. Errors are relative Frobenius "
        "errors, medians over seeds (non-finite counts as ∞).",
        "",
        "## Setup",
        "",
        f"- part 1: batch axis, m = {M} samples, d = {D} channels, seeds "
        f"{', '.join(map(str, seeds))} (random eigenbasis, samples, mean and G); spectra "
        "log-uniform from 1 to 1/κ, a collapsed one (16 eigenvalues 1 .. 1e-2 and 48 at "
        "1e-6 (1 + 1e-6 i)) and an exactly rank-deficient one (48 eigenvalues 1 .. 1e-2, 16 "
        "zeros)",
        *(
            [
                "- part 2: `configs/cifar10/st_power.yaml` at CPU scale (CIFAR-10 7680-image "
                "subset, width-16 ResNet-18, batch 256, projector 1024 → 64, ZCA of 128-row "
                "sub-batches on the batch axis), AdamW at the recipe's lr and weight decay "
                "without its schedule; shadowed sub-batch: the first 128 rows of view 0; the "
                "eig-autograd training whitens rows 0–127 and 128–255 of each view in float32"
            ]
            if train_records
            else []
        ),
        *nx.provenance_lines(meta),
        "",
        "## Reading",
        "",
        *(line + "\n" for line in reading(records, train_records)),
        "## Part 1: prescribed spectra",
        "",
        table(records),
        "",
        "![failure rate and errors vs condition number](figure.png)",
        "",
    ]
    if train_records:
        parts += [
            "## Part 2: embeddings of a real training (per step, first 128-row sub-batch)",
            "",
            training_table(train_records),
            "",
        ]
    parts.append(
        "Records: [records.json](records.json) (per trial; per training step in `training`), "
        "[records.csv](records.csv) (part 1, one row per trial)."
    )
    return "\n".join(parts)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """(a) failed + non-finite rate, (b) median forward error, (c) median gradient error,
    each against the condition number of the log-uniform spectra (log x)."""
    from specssl.experiments.report import new_figure, save_figure

    rows = summarize(records, ("spectrum", "method", "precision"))
    rows = [r for r in rows if r["spectrum"].startswith("cond")]
    conds = {r["spectrum"]: r["condition"] for r in records}
    fig, axes = new_figure(3, 1, size=(4.4, 3.4))
    (a, b, c) = axes[0]
    colors = dict(zip(METHODS, ("tab:red", "tab:orange", "tab:blue"), strict=True))
    styles = {"float32": "-", "float64": "--"}
    for method in METHODS:
        for precision in PRECISIONS:
            mine = [r for r in rows if r["method"] == method and r["precision"] == precision]
            xs = [max(conds[r["spectrum"]], 1.0) for r in mine]
            kw = {"color": colors[method], "linestyle": styles[precision], "marker": "o", "ms": 3}
            label = f"{method} {precision}"
            a.plot(
                xs,
                [100 * (r["failed"] + r["non_finite"]) / r["n"] for r in mine],
                label=label,
                **kw,
            )
            for ax, key in ((b, "forward"), (c, "grad")):
                ys = [r[key] for r in mine]
                ys = [
                    min(max(y, 1e-17), 1e4) if y is not None and math.isfinite(y) else math.nan
                    for y in ys
                ]
                ax.plot(xs, ys, label=label, **kw)
    a.set_ylabel("failed or non-finite trials (%)")
    b.set_ylabel("median relative forward error")
    c.set_ylabel("median relative gradient error")
    for ax, title in ((a, "(a) failures"), (b, "(b) output Ẑ"), (c, "(c) gradient ∂L/∂z")):
        ax.set_xscale("log")
        ax.set_xlabel("condition number κ of the covariance")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in (b, c):
        ax.set_yscale("log")
        ax.axhline(WRONG, color="grey", linewidth=0.8, linestyle="-.")
    a.legend(fontsize=6)
    fig.suptitle(
        f"m = {M}, d = {D}, batch axis; median over seeds, gaps = non-finite median; dash-dot: 10%",
        fontsize=9,
    )
    save_figure(fig, path)


def write(
    out_dir: Path,
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    train_records: list[dict[str, Any]],
) -> Path:
    """Records (json with ``records`` and ``training``; csv of part 1), figure, README.md."""
    nx.write_records(out_dir, meta, records, extra={"training": train_records})
    return nx.write_markdown(
        out_dir, report_text(meta, records, train_records), lambda p: plot(records, p)
    )


def read(out_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    data = nx.read_json(out_dir)
    return data["meta"], data["records"], data.get("training", [])
