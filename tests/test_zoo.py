"""bench/zoo.py: the method zoo's configs, short-budget adjustments and committed rows.

The zoo itself trains for hours; these tests check what decides whether its table is true:
every row's recorded config is the one its listed command would train today.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = sorted((REPO / "docs" / "results" / "cifar10_cpu").glob("*.json"))


@pytest.fixture(scope="module")
def zoo():
    spec = importlib.util.spec_from_file_location("_bench_zoo", REPO / "bench" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def args(zoo):
    return zoo.build_parser().parse_args(["--data-root", "/data"])  # the budget's defaults


def test_every_zoo_method_has_a_recipe_that_loads_under_the_budget(zoo, args):
    for method in [zoo.RANDOM_INIT, *zoo.ZOO]:
        cfg = zoo.config_of(args, method)
        assert (cfg.data.name, cfg.data.batch_size, cfg.backbone.width) == ("cifar10", 256, 16)
        assert cfg.trainer.max_epochs == 4 and cfg.seed == 0


def test_short_budget_adjustment_applies_to_the_row_and_a_variant_can_undo_it(zoo, args):
    assert set(zoo.SHORT_BUDGET) <= set(zoo.ZOO)
    assert zoo.config_of(args, "byol").optim.static_lr == ["predictor"]
    undone = zoo.config_of(args, "byol", "pred_scheduled", ["optim.static_lr=[]"])
    assert undone.optim.static_lr == []
    # a method without an adjustment keeps its recipe's setting
    assert zoo.config_of(args, "mocov2").optim.static_lr == []


def test_a_row_whose_config_differs_from_todays_is_stale(zoo, args):
    row = {"method": "byol", "recipe": zoo.recipe_of(zoo.config_of(args, "byol"))}
    assert not zoo.is_stale(row, args)
    # the same recorded recipe, listed as a variant that undoes the adjustment: not what ran
    assert zoo.is_stale({**row, "variant": "x", "overrides": ["optim.static_lr=[]"]}, args)


@pytest.mark.parametrize("path", ROWS, ids=[p.stem for p in ROWS])
def test_committed_row_matches_the_config_its_overrides_give_today(zoo, args, path):
    """A committed row must be reproducible by ``--methods M [--variant TAG OVERRIDES]``: its
    recorded method/optim config equals the one bench/zoo.py builds now (else: rerun it)."""
    row = json.loads(path.read_text())
    assert path.stem == zoo.row_key(row["method"], row.get("variant"))
    current = not zoo.is_stale(row, args) or zoo.ran_with_earlier_semantics(row, args)
    assert current, f"{path.name}: recipe changed since it ran; rerun it"
    assert row.get("loss_finite", True) and row["knn200_top1"] == row["knn200_top1"]  # no NaN
