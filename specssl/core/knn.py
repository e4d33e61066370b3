"""k-nearest-neighbour evaluation on frozen features (cosine similarity or Euclidean
distance, chunked)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    *,
    k: int = 200,
    temperature: float = 0.1,
    weighted: bool = True,
    memory_budget: int = 2**26,
    metric: str = "cosine",
) -> torch.Tensor:
    """Class scores ``(n_test, num_classes)`` of a cosine kNN classifier.

    ``weighted=True``: each of the ``k`` neighbours votes ``exp(s / temperature)`` (Wu et al.,
    2018; the k=200, T=0.1 monitor of SSL papers). ``weighted=False``: one vote each (plain
    majority; ties go to the class with larger summed similarity via a tiny tie-break).
    ``metric="euclidean"``: the ``k`` nearest by Euclidean distance of the raw features, one vote
    each (W-MSE's / CW-RGP's ``eval_knn``; ``weighted`` must be ``False``), ties to the class
    with the smaller summed distance.
    Similarities are computed in chunks of test rows so that at most ``memory_budget``
    similarity entries exist at once (1.28M training features fit).
    Shapes: ``train_features (n_train, f)``, ``train_labels (n_train,)``,
    ``test_features (n_test, f)``.
    """
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"{train_features.shape[0]} training features but {train_labels.shape[0]} labels"
        )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"feature dims differ: train {train_features.shape[1]}, test {test_features.shape[1]}"
        )
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if metric == "euclidean" and weighted:
        raise ValueError("the euclidean kNN is a plain majority vote: pass weighted=False")
    k = min(k, train_features.shape[0])
    if metric == "cosine":
        train = F.normalize(train_features.float(), dim=1)
        test = F.normalize(test_features.float(), dim=1)
    else:
        train, test = train_features.float(), test_features.float()
    labels = train_labels.to(train.device).long()
    chunk = max(1, memory_budget // max(1, train.shape[0]))
    scores = []
    for start in range(0, test.shape[0], chunk):
        if metric == "cosine":
            sim = test[start : start + chunk] @ train.T
        else:  # negative distance, so the k largest are the k nearest
            sim = -torch.cdist(test[start : start + chunk], train)
        top_sim, top_idx = sim.topk(k, dim=1)
        if weighted:
            votes = (top_sim / temperature).exp()
        elif metric == "cosine":
            votes = 1.0 + 1e-6 * top_sim
        else:  # one vote + (1 - d / max d) / (k + 1): all k tie-breaks sum below one vote
            scale = top_sim.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
            votes = 1.0 + (1.0 + top_sim / scale) / (k + 1)
        out = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        out.scatter_add_(1, labels[top_idx], votes)
        scores.append(out)
    return torch.cat(scores)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    *,
    k: int = 200,
    temperature: float = 0.1,
    weighted: bool = True,
    metric: str = "cosine",
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (in %) of :func:`knn_predict`."""
    scores = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes,
        k=k,
        temperature=temperature,
        weighted=weighted,
        metric=metric,
    )
    ranked = scores.topk(min(5, num_classes), dim=1).indices.cpu()
    target = test_labels.cpu().long()[:, None]
    return {
        "top1": 100.0 * float((ranked[:, :1] == target).any(1).float().mean()),
        "top5": 100.0 * float((ranked == target).any(1).float().mean()),
    }
