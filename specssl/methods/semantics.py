"""Settings whose defaults changed to follow the authors' code, and how to undo them.

On 2026-12-02 (issue 17) these defaults moved from this library's earlier behaviour to the
authors' (docs/fidelity.md): which views share a BatchNorm batch (``method.forward``), INTL's
multi-view pairing, INTL-M's target view, CW-RGP's centring and permutations. Records made
before carry none of these keys, so a resolved config keeps a setting in its hash (and in a
recorded recipe) only where it differs from the earlier behaviour: configs that reproduce the
earlier behaviour hash as before, the new defaults hash differently, and a stale record is
never reused for a run of the new code.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from specssl.methods import METHODS

#: ``path inside method -> value that reproduces the behaviour before 2026-12-02``, per method.
_EARLIER: dict[str, dict[tuple[str, ...], Any]] = {
    "intl": {("loss", "pairing"): "all_pairs"},
    "iternorm": {("loss", "pairing"): "all_pairs"},
    "intl_m": {("options", "pairing"): "symmetric"},
    "cwrgp": {("loss", "centre"): "group", ("loss", "permute"): "per_view"},
}
_EARLIER_FORWARD = "joint"


def earlier_settings(method: str) -> dict[tuple[str, ...], Any]:
    """Every changed setting of ``method`` with the value of its earlier behaviour."""
    return {("forward",): _EARLIER_FORWARD, **_EARLIER.get(method, {})}


def earlier_overrides(method: str) -> list[str]:
    """``method.*=value`` overrides that make a config of ``method`` behave as before
    2026-12-02 (to reproduce or extend records made then)."""
    return [f"method.{'.'.join(path)}={value}" for path, value in earlier_settings(method).items()]


def current_default(method: str, path: tuple[str, ...]) -> Any:
    """Today's default of ``path`` (``("forward",)``, ``("loss", key)``, ``("options", key)``)."""
    cls = METHODS[method]
    if path == ("forward",):
        return cls.authors_forward
    if path[0] == "options":
        return cls.OPTIONS[path[1]]
    return inspect.signature(cls.loss_cls).parameters[path[1]].default


def resolve_semantics(method_cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config's ``method`` dict (``asdict(cfg.method)``) with every changed setting
    resolved: kept explicitly where it differs from the earlier behaviour, removed where it
    equals it (so the dict reads as a record made before the change)."""
    out = copy.deepcopy(method_cfg)
    name = out.get("name")
    if name not in METHODS:
        return out
    for path, earlier in earlier_settings(name).items():
        holder = out
        for part in path[:-1]:
            holder = holder.setdefault(part, {})
        value = holder.get(path[-1], "auto" if path == ("forward",) else None)
        if value is None or value == "auto":
            value = current_default(name, path)
        if value == earlier:
            holder.pop(path[-1], None)
        else:
            holder[path[-1]] = value
    return out


__all__ = ["current_default", "earlier_overrides", "earlier_settings", "resolve_semantics"]
