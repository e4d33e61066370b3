"""The package's layers import only downward, and no package imports another's private module
or name.

Layers, bottom first (a module may import its own layer and the layers below it):

    core, viz ← spectral, reference ← losses, models, data ← methods ← train
    ← eval, experiments, toy ← cli

``reference`` holds independent float64 transcriptions for the tests; ``viz`` is plotting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import specssl

PACKAGE = Path(specssl.__file__).parent

#: Layer rank of each sub-package; a module may import ranks <= its own.
LAYERS: dict[str, int] = {
    "core": 0,
    "viz": 0,
    "reference": 1,
    "spectral": 1,
    "losses": 2,
    "models": 2,
    "data": 2,
    "methods": 3,
    "train": 4,
    "eval": 5,
    "experiments": 5,
    "toy": 5,
    "cli": 6,
    "__main__": 7,
    "__init__": 7,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every ``specssl`` import in ``path`` (absolute or
    relative), including imports inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from specssl.spectral import _common`` imports a private module too
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names if a.name[0] == "_"]
    # ``import specssl`` / ``from specssl import __version__``: the top-level package holds only
    # the version, so every layer may read it
    return [
        (line, m) for line, m in found if m.startswith("specssl.") and m != "specssl.__version__"
    ]


def _layer(module_parts: tuple[str, ...]) -> str:
    return module_parts[1] if len(module_parts) > 1 else "__init__"


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        own = _layer(parts)
        if own not in LAYERS:
            problems.append(f"{path}: sub-package {own!r} has no layer in tests/test_layers.py")
            continue
        for line, module in _imports(path):
            target = tuple(module.split("."))
            other = _layer(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
            if other not in LAYERS:
                continue  # attribute of the top-level package (e.g. ``specssl.__version__``)
            if LAYERS[other] > LAYERS[own]:
                problems.append(f"{where} (layer {other} is above {own})")
            private = [p for p in target[2:] if p.startswith("_") and p != "__init__"]
            if private and other != own:
                problems.append(f"{where} (private module or name of {other})")
    return problems


def test_layers_import_only_downward_and_no_private_modules_across_packages():
    assert violations() == []


def test_the_check_sees_an_upward_and_a_private_import(tmp_path, monkeypatch):
    """The walker itself: a planted upward import and a private cross-package import are
    found (guards against a check that silently passes)."""
    fake = tmp_path / "specssl"
    (fake / "spectral").mkdir(parents=True)
    (fake / "losses").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "spectral" / "bad.py").write_text("from specssl.train.config import ConfigError\n")
    (fake / "losses" / "bad.py").write_text(
        "from specssl.spectral._common import center\nfrom ..spectral import _common\n"
    )
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = violations()
    assert any("spectral/bad.py:1 imports specssl.train.config (layer train" in p for p in found)
    assert sum("private module or name of spectral" in p for p in found) == 2
