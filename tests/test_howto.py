"""docs/howto.md stays true: its python blocks run and do what the text says, and every file,
test-file name and ``specssl.`` name it cites exists.

Cited paths are the backquoted spans that start with a top-level directory of the repository;
``<name>`` placeholders match any file name and ``{a,b}`` alternatives are each checked.
``path::NAME`` must be a function, class or module-level assignment of ``path``.
"""

from __future__ import annotations

import importlib
import itertools
import math
import re
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HOWTO = REPO / "docs" / "howto.md"
TOP_DIRS = ("specssl", "configs", "tests", "docs", "bench", "experiments")


def section(title: str) -> str:
    """The text of the ``## `` section of docs/howto.md whose heading starts with ``title``."""
    parts = re.split(r"^## ", HOWTO.read_text(), flags=re.M)
    found = [p for p in parts if p.startswith(title)]
    assert len(found) == 1, f"docs/howto.md has no single section {title!r}"
    return found[0]


def python_blocks(text: str) -> list[str]:
    """The fenced python blocks of ``text``, dedented (blocks inside list items are indented)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", text, flags=re.M | re.S)
    return [textwrap.dedent(code) for _, code in blocks]


def cited_spans() -> list[str]:
    """Every inline code span of docs/howto.md (fenced blocks removed first)."""
    text = re.sub(r"^ *```.*?^ *```", "", HOWTO.read_text(), flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", text)


def expand_braces(path: str) -> list[str]:
    """``a/{b,c}.py`` -> ``["a/b.py", "a/c.py"]`` (any number of brace groups)."""
    pieces = re.split(r"\{([^}]*)\}", path)
    options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(pieces)]
    return ["".join(choice) for choice in itertools.product(*options)]


def cited_paths() -> list[tuple[str, str | None]]:
    """``(path, name)`` for every cited repository path; ``name`` is the part after ``::``."""
    out = []
    for span in cited_spans():
        head = span.split()[0]  # `python -m pytest tests/x.py -q` cites no path at its start
        if not head.startswith(tuple(f"{d}/" for d in TOP_DIRS)):
            continue
        path, _, name = head.partition("::")
        out += [(p, name or None) for p in expand_braces(path)]
    return out


def defines(path: Path, name: str) -> bool:
    source = path.read_text()
    pattern = rf"^(?:def|class) {re.escape(name)}\b|^{re.escape(name)}\s*(?::[^=\n]*)?="
    return re.search(pattern, source, flags=re.M) is not None


def test_every_cited_path_and_test_name_exists():
    cited = cited_paths()
    assert len(cited) > 40  # the parser still finds the how-to's citations
    missing = []
    for path, name in cited:
        pattern = re.sub(r"<[^>]+>", "*", path)
        matches = sorted(REPO.glob(pattern)) if "*" in pattern else [REPO / path]
        if not any(m.exists() for m in matches):
            missing.append(path)
        elif name and not any(m.is_file() and defines(m, name) for m in matches):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/howto.md cites what does not exist: {missing}"


def test_every_cited_specssl_name_resolves():
    names = sorted({s for s in cited_spans() if re.fullmatch(r"specssl(\.\w+)+", s)})
    assert len(names) > 8
    unresolved = []
    for dotted in names:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module prefix
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                unresolved.append(dotted)
            break
        else:
            unresolved.append(dotted)
    assert not unresolved, f"docs/howto.md names what does not exist: {unresolved}"


def test_the_method_checklist_names_every_registered_family_module():
    """Step 3 lists the modules a method class goes into: every one of specssl/methods that
    defines a registered method, and no other."""
    from specssl.methods import METHODS

    text = section("Add a method")
    step3 = text.split("3. **Method**", 1)[1].split("4. **Recipe**", 1)[0]
    listed = set(re.findall(r"`(\w+)\.py`", step3))
    defining = {cls.__module__.rsplit(".", 1)[1] for cls in METHODS.values()}
    assert listed == defining


def test_every_named_backbone_preset_of_the_table_is_registered():
    from specssl.models.external import BACKBONE_PRESETS

    table = section("Train with a timm or torchvision backbone")
    rows = re.findall(r"^\| (`[^|]*`) \|", table, re.M)
    names = {n for row in rows for n in re.findall(r"`(\w+)`", row)}
    assert len(names) >= 3 and names <= set(BACKBONE_PRESETS)


def test_register_backbone_block_builds_a_backbone_of_that_name():
    from specssl.models import build_backbone
    from specssl.models.external import BACKBONE_PRESETS

    blocks = python_blocks(section("Train with a timm or torchvision backbone"))
    assert len(blocks) == 1
    name = re.search(r'register_backbone\("(\w+)"', blocks[0]).group(1)
    assert name not in BACKBONE_PRESETS
    try:
        exec(compile(blocks[0], "docs/howto.md", "exec"), {"__name__": "howto"})
        net = build_backbone(name, width=16)  # "backbone.width still sets the head width"
        assert net.out_dim == 2 * 16  # num_heads=2 in the block
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.out_dim)
    finally:
        BACKBONE_PRESETS.pop(name, None)


def test_plain_pytorch_loop_block_trains_with_our_loss(capsys):
    from specssl.losses import INTLLoss

    blocks = python_blocks(section("Use one of our losses with a timm model"))
    assert len(blocks) == 1
    scope: dict = {"__name__": "howto"}
    exec(compile(blocks[0], "docs/howto.md", "exec"), scope)
    printed = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"^step \d+: loss (\S+)$", printed, flags=re.M)]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert "condition_indicator" in printed
    assert isinstance(scope["loss_fn"], INTLLoss)
    # "AdamW without weight decay on biases, norms, pos_embed and cls_token"
    assert {"backbone.pos_embed", "backbone.cls_token"} <= set(scope["skip"])
    groups = scope["optimizer"].param_groups
    assert [g["weight_decay"] for g in groups] == [0.04, 0.0]
    no_decay = {id(p) for p in groups[1]["params"]}
    params = dict(scope["model"].named_parameters())
    for n in ("backbone.pos_embed", "backbone.cls_token", "backbone.norm.weight"):
        assert id(params[n]) in no_decay
    assert len(groups[0]["params"]) + len(no_decay) == len(params)
    # the optimiser stepped: every parameter has AdamW state
    assert all(scope["optimizer"].state[p]["step"] == 3 for p in params.values())


def test_howto_has_no_untested_python_block():
    """Every python block of docs/howto.md is one of the blocks the tests above execute."""
    text = HOWTO.read_text()
    tested = python_blocks(section("Train with a timm or torchvision backbone")) + python_blocks(
        section("Use one of our losses with a timm model")
    )
    assert sorted(python_blocks(text)) == sorted(tested)
