"""k-nearest-neighbour evaluation on frozen features (cosine similarity, chunked)."""

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
) -> torch.Tensor:
    """Class scores ``(n_test, num_classes)`` of a cosine kNN classifier.

    ``weighted=True``: each of the ``k`` neighbours votes ``exp(s / temperature)`` (Wu et al.,
    2018; the k=200, T=0.1 monitor of SSL papers). ``weighted=False``: one vote each (plain
    majority; ties go to the class with larger summed similarity via a tiny tie-break).
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
    k = min(k, train_features.shape[0])
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    labels = train_labels.to(train.device).long()
    chunk = max(1, memory_budget // max(1, train.shape[0]))
    scores = []
    for start in range(0, test.shape[0], chunk):
        sim = test[start : start + chunk] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = (top_sim / temperature).exp() if weighted else 1.0 + 1e-6 * top_sim
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
    )
    ranked = scores.topk(min(5, num_classes), dim=1).indices.cpu()
    target = test_labels.cpu().long()[:, None]
    return {
        "top1": 100.0 * float((ranked[:, :1] == target).any(1).float().mean()),
        "top5": 100.0 * float((ranked == target).any(1).float().mean()),
    }
