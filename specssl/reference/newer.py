"""Independent float64 transcriptions of the newer objectives, for ``tests/test_losses_newer.py``
(never used in training).

Each is written from the paper's formula and the semantics of the authors' code (cited per
function), with different numerics from ``specssl/losses`` wherever there is a choice: the
``m x m`` batch-wise MEC matrix and ``matrix_power``; ``torch.logdet`` instead of a Cholesky
factor; nuclear norms from the eigenvalues of a Gram matrix instead of an SVD; the
Epps–Pulley integral as a complex characteristic function on the full symmetric grid with
``torch.trapezoid``; the exp-domain Sinkhorn iteration of the ReSA authors. Inputs are lists of
``(m, d)`` float64 tensors (gradients flow through them).
"""

from __future__ import annotations

import torch


def _unit_rows(z: torch.Tensor) -> torch.Tensor:
    return z / z.pow(2).sum(dim=1, keepdim=True).sqrt()


def _unit_columns(z: torch.Tensor) -> torch.Tensor:
    return z / z.pow(2).sum(dim=0, keepdim=True).sqrt()


# ------------------------------------------------------------------------------------ MEC


def ref_mec_pair(p: torch.Tensor, z: torch.Tensor, lamda_inv: float, order: int) -> torch.Tensor:
    """xinliu20/MEC ``main_pretrain.py`` ``loss_func``: ``c = p̄ z̄ᵀ / lamda_inv`` (m x m) and
    ``tr Σ_{k=1}^{order} (-1)^{k+1} c^k / k`` (MEC Eqn. 3's series)."""
    c = _unit_rows(p) @ _unit_rows(z).T / lamda_inv
    return sum(
        (-1) ** (k + 1) / k * torch.trace(torch.linalg.matrix_power(c, k))
        for k in range(1, order + 1)
    )


def ref_mec(
    teachers: list[torch.Tensor],
    students: list[torch.Tensor],
    eps_sq: float,
    order: int,
    warmup_scale: float = 1.0,
    detach_teachers: bool = True,
) -> torch.Tensor:
    """The authors' training loss ``-lamda_inv · mean_{i != j} tr_ij / m`` with
    ``lamda_inv = warmup_scale · m ε² / d``; for two views ``-(tr(p1, z2) + tr(p2, z1)) · 0.5
    / m · lamda_inv``. The teachers are detached (the EMA network's ``p.detach()``) unless
    ``detach_teachers=False`` (the symmetric form, both sides trained)."""
    if detach_teachers:
        teachers = [t.detach() for t in teachers]
    m, d = students[0].shape
    lamda_inv = warmup_scale * m * eps_sq / d
    n = len(students)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    total = sum(ref_mec_pair(teachers[i], students[j], lamda_inv, order) for i, j in pairs)
    return -total / len(pairs) / m * lamda_inv


# ----------------------------------------------------------------------------- CorInfoMax


def ref_corinfomax(
    views: list[torch.Tensor],
    R: list[torch.Tensor],
    mu: list[torch.Tensor],
    sim_weight: float,
    la_R: float,
    la_mu: float,
    R_eps: float,
    normalize: bool = True,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """serdarozsoy/corinfomax-ssl ``cifars-tiny/loss.py`` (CovarianceLoss + invariance_loss)
    with the model's ``--normalize_on``, for two views; returns ``(loss, new R, new mu)``.
    The covariance update is a sum of outer products, the log-det ``torch.logdet``."""
    zs = [_unit_rows(z) if normalize else z for z in views]
    m, d = zs[0].shape
    new_R, new_mu, logdets = [], [], []
    for z, r_old, mu_old in zip(zs, R, mu, strict=True):
        mu_new = la_mu * mu_old + (1 - la_mu) * z.sum(dim=0) / m
        r_batch = sum(torch.outer(z[b] - mu_new, z[b] - mu_new) for b in range(m)) / m
        r_new = la_R * r_old + (1 - la_R) * r_batch
        logdets.append(torch.logdet(r_new + R_eps * torch.eye(d, dtype=z.dtype)))
        new_R.append(r_new.detach())
        new_mu.append(mu_new.detach())
    cov_loss = -(logdets[0] + logdets[1]) / d
    sim_loss = ((zs[0] - zs[1]) ** 2).sum() / (m * d)
    return sim_weight * sim_loss + cov_loss, new_R, new_mu


# -------------------------------------------------------------------------------- EMP-SSL


def ref_total_coding_rate(z: torch.Tensor, eps_sq: float) -> torch.Tensor:
    """EMP-SSL ``loss.py`` ``TotalCodingRate``: ``½ logdet(I_d + d / (m eps) WWᵀ)``, ``W = Zᵀ``."""
    m, d = z.shape
    w = z.T
    return torch.logdet(torch.eye(d, dtype=z.dtype) + d / (m * eps_sq) * (w @ w.T)) / 2


def ref_emp_ssl(
    patches: list[torch.Tensor], eps_sq: float, inv_weight: float, tcr_weight: float
) -> torch.Tensor:
    """tsb0601/EMP-SSL ``main.py``: ``patch_sim · Similarity_Loss + tcr · cal_TCR`` on the
    l2-normalised patch embeddings (``model/model.py`` normalises)."""
    zs = [_unit_rows(z) for z in patches]
    n = len(zs)
    avg = sum(zs) / n
    sim = 0
    for z in zs:
        cos = (z * avg).sum(dim=1) / (z.norm(dim=1) * avg.norm(dim=1))
        sim = sim + cos.mean()
    sim = sim / n
    tcr = sum(-ref_total_coding_rate(z, eps_sq) for z in zs) / n
    return inv_weight * (-sim) + tcr_weight * tcr


# ----------------------------------------------------------------------------------- MMCR


def _nuclear_norm(a: torch.Tensor) -> torch.Tensor:
    """``‖A‖_*`` as ``Σ sqrt(eig(G))`` of the smaller Gram matrix ``G`` (no SVD)."""
    g = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return torch.linalg.eigvalsh(g).clamp_min(0).sqrt().sum()


def ref_mmcr(views: list[torch.Tensor], lmbda: float) -> torch.Tensor:
    """ThomasYerxa/mmcr ``mmcr/cifar_stl/loss_mmcr.py``: ``λ Σ_b ‖Z_b‖_* / B - ‖C‖_*``."""
    zs = [_unit_rows(z) for z in views]
    m = zs[0].shape[0]
    centroids = sum(zs) / len(zs)
    loss = -_nuclear_norm(centroids)
    if lmbda:
        local = sum(_nuclear_norm(torch.stack([z[b] for z in zs], dim=1)) for b in range(m))
        loss = loss + lmbda * local / m
    return loss


# --------------------------------------------------------------------------------- FroSSL


def ref_frossl(views: list[torch.Tensor], invariance_weight: float) -> torch.Tensor:
    """OFSkean/FroSSL ``solo/losses/frossl.py`` ``multiview_frossl_loss_func`` (commit 4942ce5):
    per view ``-(-2 log ‖cov / tr(cov)‖_F) + V · D · w · mse(z_v, mean)``, summed; ``cov`` the
    ``d x d`` matrix, the trace a constant (the authors' ``.item()``)."""
    zs = [_unit_columns(z) for z in views]
    n_views = len(zs)
    m, d = zs[0].shape
    avg = sum(zs) / n_views
    total = 0
    for z in zs:
        cov = z.T @ z
        cov = cov / torch.trace(cov).detach()
        reg = -2 * torch.log(torch.sqrt((cov * cov).sum()))
        inv = n_views * ((z - avg) ** 2).sum() / (m * d) * d * invariance_weight
        total = total - reg + inv
    return total


# --------------------------------------------------------------------------------- LeJEPA


def ref_epps_pulley(x: torch.Tensor, t_max: float, knots: int) -> torch.Tensor:
    """``N ∫_{-t_max}^{t_max} |φ̂_x(t) - e^{-t²/2}|² e^{-t²/2} dt`` for each column of
    ``x: (N, K)``, by the trapezoidal rule on ``2 knots - 1`` points with the complex
    empirical characteristic function (LeJEPA's Epps–Pulley test)."""
    n = x.shape[0]
    t = torch.linspace(-t_max, t_max, 2 * knots - 1, dtype=x.dtype)
    ecf = torch.exp(1j * t[:, None, None] * x[None].to(torch.complex128)).mean(dim=1)  # (T, K)
    phi = torch.exp(-(t**2) / 2)
    integrand = (ecf - phi[:, None]).abs() ** 2 * phi[:, None]
    return n * torch.trapezoid(integrand, t, dim=0)


def ref_lejepa(
    views: list[torch.Tensor],
    directions: torch.Tensor,
    lamb: float,
    t_max: float,
    knots: int,
    centre_views: int | None = None,
) -> torch.Tensor:
    """rbalestr-lab/lejepa ``MINIMAL.md``: ``lamb · SIGReg + (1 - lamb) · inv`` with SIGReg the
    mean over views and slices of the Epps–Pulley statistic of ``z_v a_k`` and ``inv`` the mean
    squared distance to the mean of the views (of the first ``centre_views``, the paper's
    global views, when given)."""
    n_views = len(views)
    m, d = views[0].shape
    sigreg = sum(ref_epps_pulley(z @ directions, t_max, knots).mean() for z in views) / n_views
    k = n_views if centre_views is None else centre_views
    centre = sum(views[:k]) / k
    inv = sum(((centre - z) ** 2).sum() for z in views) / (n_views * m * d)
    return lamb * sigreg + (1 - lamb) * inv


# ----------------------------------------------------------------------------------- ReSA


def ref_sinkhorn(scores: torch.Tensor, temp: float, n_iterations: int) -> torch.Tensor:
    """winci-ai/resa ``method/base.py`` ``sinkhorn_knopp`` (single process), exp domain."""
    q = torch.exp(scores / temp).t()
    b, k = q.shape[1], q.shape[0]
    q = q / q.sum()
    for _ in range(n_iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


def ref_resa(
    online: list[torch.Tensor],
    targets: list[torch.Tensor],
    h: torch.Tensor,
    h_m: torch.Tensor,
    temperature: float,
    sk_temp: float = 0.05,
    sk_iters: int = 3,
    detach_targets: bool = True,
) -> torch.Tensor:
    """winci-ai/resa_cifar ``method/resa.py`` ``ReSA.forward`` after ``ForwardWrapper``'s
    normalisations: ``assign = SK(h̄ h̄_mᵀ)``, then ``-Σ assign · log_softmax(ē_q ē'_vᵀ / τ)``
    averaged over samples and over the pairs ``q != v``. The targets come from the momentum
    network under ``no_grad`` (detached) unless ``detach_targets=False`` (no EMA network)."""
    if detach_targets:
        targets = [t.detach() for t in targets]
    with torch.no_grad():
        assign = ref_sinkhorn(_unit_rows(h) @ _unit_rows(h_m).T, sk_temp, sk_iters)
    emb = [_unit_rows(z) for z in online]
    emb_m = [_unit_rows(z) for z in targets]
    total, n_terms = 0, 0
    for q in range(len(emb)):
        for v in range(len(emb_m)):
            if v == q:
                continue
            s = emb[q] @ emb_m[v].T / temperature
            log_p = s - torch.logsumexp(s, dim=1, keepdim=True)
            total = total - (assign * log_p).sum(dim=1).mean()
            n_terms += 1
    return total / n_terms


__all__ = [
    "ref_corinfomax",
    "ref_emp_ssl",
    "ref_epps_pulley",
    "ref_frossl",
    "ref_lejepa",
    "ref_mec",
    "ref_mec_pair",
    "ref_mmcr",
    "ref_resa",
    "ref_sinkhorn",
    "ref_total_coding_rate",
]
