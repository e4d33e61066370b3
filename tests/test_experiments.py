"""The papers' experiment scripts (experiments/*.py) and their sweep library, at smoke scale.

Every script runs its 2-point smoke grid end to end (digits, width-4 network, 2 steps per run)
and writes the markdown table, CSV and PNG; a re-run trains only what is missing; a diverging
run is recorded as a result.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

from specssl.experiments import Budget, RunSpec, Sweep, config_hash, summarize
from specssl.experiments.report import BEGIN, END, markdown_table, status_text
from specssl.experiments.report import Column as Col
from specssl.experiments.sweep import is_numerical_failure, read_spectrum_csv
from specssl.train.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["fig2b_power_sweep", "fig3_iternorm_T", "table4_batch_dim", "cwrgp_ablations"]
RECIPES = ["st_power", "intl", "iternorm", "cwrgp", "wmse"]
PNG = b"\x89PNG\r\n\x1a\n"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"_exp_{name}", REPO / "experiments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(md: str) -> list[list[str]]:
    """Data rows of every markdown table in ``md`` (header and rule lines dropped)."""
    rows, previous = [], ""
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|---") and previous.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        previous = line if line.startswith("|") else ""
    return [r for r in rows if set(r[0]) != {"-"}]


def split_reference(md: str) -> tuple[str, str]:
    """(``md`` without its random-init reference section, that section)."""
    head, found, tail = md.partition("## Random-init reference")
    if not found:
        return md, ""
    section, _, rest = tail.partition("\n## ")
    return head + "## " + rest, section


def result_rows(md: str) -> list[list[str]]:
    """Data rows of the result tables of a report (the random-init reference left out)."""
    return table_rows(split_reference(md)[0])


# ------------------------------------------------------------------------- library units
@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_budget_overrides_give_valid_configs_for_every_recipe(scale):
    budget = Budget(scale, data_root="/data", devices=2 if scale == "paper" else 1)
    for name in RECIPES:
        ovr = budget.overrides(batch_size=256, paper_epochs=100)
        cfg = load_config(REPO / "configs" / "cifar10" / f"{name}.yaml", ovr)
        assert cfg.monitor.knn_k == [200, 5] and not cfg.monitor.knn_on_init
        if scale == "smoke":
            assert cfg.data.name == "digits" and cfg.data.batch_size == 64
            assert cfg.trainer.max_epochs == 1 and cfg.backbone.width == 4
        elif scale == "cpu":
            assert (cfg.data.name, cfg.data.subset, cfg.backbone.width) == ("cifar10", 7680, 16)
            assert cfg.data.root == "/data" and cfg.trainer.max_epochs == 3
        else:  # paper: the recipe's network, full data, global batch kept over 2 devices
            assert cfg.backbone.width == 64 and cfg.data.subset is None
            assert cfg.data.batch_size == 256 and cfg.trainer.devices == "2"  # global batch
            assert cfg.trainer.max_epochs == 100


def test_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="scale"):
        Budget("huge")
    with pytest.raises(ValueError, match="divisible"):
        Budget("paper", devices=3).overrides(batch_size=256, paper_epochs=1)
    assert Budget("cpu", epochs=7).epochs_of(100) == 7


def test_config_hash_ignores_paths_and_logging_but_not_hyperparameters():
    recipe = REPO / "configs" / "cifar10" / "st_power.yaml"
    base = config_hash(load_config(recipe))
    moved = load_config(recipe, ["data.root=/else", "output_dir=/x", "data.num_workers=0"])
    assert config_hash(moved) == base
    assert config_hash(load_config(recipe, ["method.loss.p=0.45"])) != base
    assert config_hash(load_config(recipe, ["seed=1"])) != base


def test_config_hash_ignores_lars_settings_only_when_the_optimizer_is_not_lars():
    """Adding LARS options must not orphan cached SGD runs, but they do change a LARS run."""
    recipe = REPO / "configs" / "cifar10" / "intl.yaml"  # SGD
    sgd = config_hash(load_config(recipe))
    assert config_hash(load_config(recipe, ["optim.lars_eta=0.5"])) == sgd
    assert config_hash(load_config(recipe, ["optim.lars_clip_lr=true"])) == sgd
    lars = load_config(recipe, ["optim.name=lars"])
    assert config_hash(lars) != sgd
    assert config_hash(load_config(recipe, ["optim.name=lars", "optim.lars_eta=0.5"])) != (
        config_hash(lars)
    )


def test_an_option_added_later_changes_the_hash_only_away_from_its_default():
    """Runs cached before ``optim.static_lr`` existed (their config has no such key) keep their
    hash; setting the option changes it. The hash of this recipe was recorded before the key
    was added (Figure 2(b)'s cached runs, docs/results/fig2b_power_sweep/runs)."""
    from dataclasses import asdict

    from specssl.experiments.sweep import without_unchanging

    cfg = load_config(REPO / "configs" / "cifar10" / "intl.yaml")
    old = asdict(cfg)
    del old["optim"]["static_lr"]  # the config as recorded before the option existed
    assert without_unchanging(asdict(cfg)) == without_unchanging(old)
    predictor = load_config(
        REPO / "configs" / "cifar10" / "intl.yaml", ["optim.static_lr=[projector]"]
    )
    assert config_hash(predictor) != config_hash(cfg)


def test_run_key_names_the_point_and_seed():
    spec = RunSpec({"method": "intl", "T": 3, "axis": "a/b"}, 2, REPO / "x.yaml")
    assert spec.key == "method=intl_T=3_axis=a-b_seed=2"


def test_summarize_mean_std_over_finished_seeds_and_reports_divergence():
    records = [
        {"p": 0.5, "seed": 0, "status": "ok", "knn200_top1": 40.0},
        {"p": 0.5, "seed": 1, "status": "ok", "knn200_top1": 50.0},
        {"p": 0.5, "seed": 2, "status": "diverged", "diverged_step": 7, "knn200_top1": None},
        {"p": 1.5, "seed": 0, "status": "failed", "error": "ValueError: singular"},
    ]
    rows = summarize(records, ["p"], metrics=["knn200_top1"])
    assert [r["p"] for r in rows] == [0.5, 1.5]
    first, second = rows
    assert first["knn200_top1"] == pytest.approx(45.0)
    assert first["knn200_top1_std"] == pytest.approx(math.sqrt(50.0))  # sample std of 40, 50
    assert (first["n"], first["n_ok"], first["n_diverged"]) == (3, 2, 1)
    assert "diverged** 1/3 at step 7" in status_text(first) and "ok 2/3" in status_text(first)
    assert second["knn200_top1"] is None and "failed** 1/1" in status_text(second)
    table = markdown_table(rows, [Col("p", "p", "{:g}", spread=False), Col("knn200_top1", "acc")])
    assert "| 0.5 | 45.00 ± 7.07 |" in table and "| 1.5 | – |" in table


def test_numerical_failures_are_results_but_config_errors_are_not():
    """Classified by the type the spectral layer raises, never by the message's words."""
    import torch

    from specssl.spectral import cholesky_whiten

    failures = []
    for z in (torch.randn(8, 8), torch.full((16, 4), float("nan"))):  # rank 7 of 8; NaN
        try:
            cholesky_whiten(z, axis="batch")
        except ValueError as err:
            failures.append(err)
    assert len(failures) == 2 and all(is_numerical_failure(e) for e in failures)
    assert not is_numerical_failure(ConfigError("config key 'x': not positive definite"))
    assert not is_numerical_failure(ValueError("the covariance is not positive definite"))


def test_read_spectrum_csv_keeps_the_last_rows_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "eigenvalues.csv"
    rows = [
        ["epoch", "which", "index", "eigenvalue"],
        [0, "z", 0, 3.0],
        [0, "z", 1, 1.0],
        [1, "z", 0, 9.0],
        [1, "z", 1, 2.0],
        [1, "z", 0, 5.0],  # a resumed run recorded epoch 1 again
        [1, "zhat", 0, 1.0],
    ]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert read_spectrum_csv(path) == {0: {"z": [3.0, 1.0]}, 1: {"z": [5.0, 2.0], "zhat": [1.0]}}


# ---------------------------------------------------------------------- the scripts, smoke
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Each script's default smoke grid (2 points, seed 0), run once for the module."""
    out = {}
    for name in SCRIPTS:
        base = tmp_path_factory.mktemp(name)
        args = ["--scale", "smoke", "--out", str(base / "out"), "--runs-dir", str(base / "runs")]
        assert load_script(name).main(args) == 0
        out[name] = (base, args)
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_grid_writes_table_csv_figure_and_records(smoke_runs, name):
    out = smoke_runs[name][0] / "out"
    md = (out / "smoke.md").read_text()
    assert len(table_rows(split_reference(md)[1])) == 1
    rows = result_rows(md)
    assert len(rows) == 2, rows
    assert all(r[-1] == "ok (1 seed)" for r in rows), rows
    for row in rows:  # kNN top-1 is a percentage
        knn = [c for c in row if "." in c and c.replace(".", "").isdigit()]
        assert knn and all(0 <= float(v) <= 100 for v in knn[:1])
    assert "python experiments/" in md and "commit(s) of the runs" in md and "wall time" in md
    assert "runs: 2/2 done" in md and BEGIN in md and END in md
    assert (out / "smoke.png").read_bytes()[:8] == PNG
    with (out / "smoke.csv").open() as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    cached = sorted((out / "runs" / "smoke").glob("*.json"))
    assert len(cached) == 2
    for path in cached:
        record = json.loads(path.read_text())
        assert 0 <= record["knn200_top1"] <= 100 and record["steps"] >= 2
        assert record["spectra"]["epochs"] == [0, 1] and record["spectra"]["z_final"]
        assert record["config_hash"] in path.name and record["run_wall_s"] > 0


def test_random_init_reference_is_the_first_runs_own_initial_network(smoke_runs):
    """The reference is evaluated on the network the first run starts from: its epoch-0
    spectrum equals the one the first run's spectrum monitor recorded before training."""
    base, _ = smoke_runs["fig3_iternorm_T"]
    refs = list((base / "out" / "runs" / "smoke" / "random-init").glob("seed=0-*.json"))
    assert len(refs) == 1
    ref = json.loads(refs[0].read_text())
    assert ref["key"] == "random-init" and ref["status"] == "ok"
    assert 0 <= ref["knn200_top1"] <= 100 and 0 <= ref["knn5_top1"] <= 100
    first = json.loads(
        (base / "out" / "runs" / "smoke" / f"{ref['of_run']}-{ref['config_hash']}.json").read_text()
    )
    runs = base / "runs"
    run_init = read_spectrum_csv(Path(first["run_dir"]) / "spectrum" / "eigenvalues.csv")[0]
    ref_dir = runs / f"random-init_{ref['of_run']}-{ref['config_hash']}"
    ref_init = read_spectrum_csv(ref_dir / "spectrum" / "eigenvalues.csv")[0]
    for which in ("z", "zhat"):
        assert ref_init[which] == pytest.approx(run_init[which], rel=1e-5, abs=1e-9)
    md = (base / "out" / "smoke.md").read_text()
    row = table_rows(split_reference(md)[1])
    assert len(row) == 1 and f"{ref['knn200_top1']:.2f}" in row[0]


def test_rerun_trains_only_the_missing_points(smoke_runs, monkeypatch):
    base, args = smoke_runs["fig2b_power_sweep"]
    trained = []
    original = Sweep.run_one

    def counting(self, spec, cfg, digest):
        trained.append(spec.key)
        return original(self, spec, cfg, digest)

    monkeypatch.setattr(Sweep, "run_one", counting)
    script = load_script("fig2b_power_sweep")
    assert script.main(args) == 0  # the whole default smoke grid is cached
    assert trained == []
    assert script.main([*args, "--p", "0.5", "0.55"]) == 0  # p = 0.5 cached, 0.55 new
    assert trained == ["p=0.55_seed=0"]
    rows = result_rows((base / "out" / "smoke.md").read_text())
    assert [r[0] for r in rows] == ["0.5", "0.55"]


def test_report_rebuild_keeps_the_analysis_text(smoke_runs):
    base, args = smoke_runs["cwrgp_ablations"]
    md = base / "out" / "smoke.md"
    md.write_text(md.read_text().split(END)[0] + END + "\n\n## Analysis\n\nSeen by a human.\n")
    assert load_script("cwrgp_ablations").main([*args, "--report-only"]) == 0
    text = md.read_text()
    assert text.endswith("Seen by a human.\n") and text.count(BEGIN) == 1


@pytest.mark.parametrize(
    "name, flags, shown, hidden",
    [
        ("cwrgp_ablations", ["--studies", "groups"], "Random group", ["Batch vs", "ZCA vs PCA"]),
        ("table4_batch_dim", ["--sweeps", "dim"], "Embedding dimension", ["Batch size"]),
    ],
)
def test_a_report_lists_only_the_studies_it_was_asked_for(smoke_runs, name, flags, shown, hidden):
    base, args = smoke_runs[name]
    out = base / "subset"
    assert load_script(name).main([*args, "--out", str(out), "--report-only", *flags]) == 0
    titles = [line for line in (out / "smoke.md").read_text().splitlines() if line[:3] == "## "]
    assert any(shown in t for t in titles), titles
    assert not any(h in t for t in titles for h in hidden), titles


def test_dry_run_lists_runs_and_trains_nothing(smoke_runs, capsys, monkeypatch):
    args = smoke_runs["table4_batch_dim"][1]
    monkeypatch.setattr(Sweep, "run_one", lambda *a: pytest.fail("dry run must not train"))
    assert load_script("table4_batch_dim").main([*args, "--dry-run", "--seeds", "0", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.endswith("done") for line in lines) == 2  # seed 0 is cached
    assert sum(line.endswith("to run") for line in lines) == 2  # seed 1 is not


def test_a_diverging_run_is_recorded_not_raised(tmp_path):
    out = tmp_path / "out"
    args = ["--scale", "smoke", "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    # An absurd learning rate makes the weights, then the loss, non-finite after one step.
    extra = ["--methods", "iternorm", "--T", "1", "--set", "optim.lr=1e30"]
    assert load_script("fig3_iternorm_T").main([*args, *extra]) == 0
    (record_file,) = (out / "runs" / "smoke").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "diverged"
    assert isinstance(record["diverged_step"], int) and record["diverged_step"] >= 0
    assert record["knn200_top1"] is None and "diverged" in record["error"]
    (row,) = result_rows((out / "smoke.md").read_text())
    assert row[0] == "1" and f"at step {record['diverged_step']}" in row[-1]
    assert (out / "smoke.png").read_bytes()[:8] == PNG


def test_a_config_shared_by_two_grid_points_is_trained_once(tmp_path, monkeypatch):
    trained = []
    original = Sweep.run_one

    def counting(self, spec, cfg, digest):
        trained.append(spec.key)
        return original(self, spec, cfg, digest)

    monkeypatch.setattr(Sweep, "run_one", counting)
    out = tmp_path / "out"
    args = ["--scale", "smoke", "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    # batch sweep at the smoke dim 16 and dim sweep at the smoke batch 64: both (64, 16)
    assert load_script("table4_batch_dim").main([*args, "--batch-sizes", "64", "--dims", "16"]) == 0
    assert len(trained) == 1
    rows = result_rows((out / "smoke.md").read_text())
    assert [r[0] for r in rows] == ["64", "16"]  # one row in each section, same numbers
    assert rows[0][1] == rows[1][1]


def test_missing_data_directory_is_a_one_line_error(tmp_path, capsys):
    args = ["--scale", "cpu", "--data-root", str(tmp_path / "nowhere"), "--p", "0.5"]
    args += ["--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    assert load_script("fig2b_power_sweep").main(args) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.json"))


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("fig2b_power_sweep.py", "--epochs 10 --seeds 0 1 2"),
        ("fig3_iternorm_T.py", "--seeds 0 1 2"),
        ("table4_batch_dim.py", "--seeds 0 1 2"),
        ("cwrgp_ablations.py", "--seeds 0 1 2"),
        (
            "table4_batch_dim.py",
            "--sweeps batch --batch-sizes 32 --seeds 0 1 2 --set method.loss.beta=0.05 "
            "--out docs/results/table4_batch_dim/batch32_beta005",
        ),
        (
            "cwrgp_ablations.py",
            "--studies groups --views 2 --epochs 10 --seeds 0 "
            "--out docs/results/cwrgp_ablations/groups_10ep",
        ),
    ],
)
def test_committed_cpu_results_are_found_by_the_current_config_hash(script, args, tmp_path):
    """Every point of a committed cpu report is found in its run records: a change to the
    config (a new option, a renamed key) that moved the hashes would orphan them. The records
    predate the 2026-12-02 fidelity defaults, so they are looked up with
    ``--earlier-semantics`` (the settings they ran with)."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        str(REPO / "experiments" / script),
        "--scale",
        "cpu",
        "--dry-run",
        "--earlier-semantics",
    ]
    out = subprocess.run(
        [*cmd, "--data-root", str(tmp_path), *args.split()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    points = [line for line in out.splitlines() if line.endswith((" done", " to run"))]
    assert points and all(line.endswith(" done") for line in points), out


def test_todays_defaults_do_not_reuse_records_of_the_earlier_semantics(tmp_path):
    """A run with the authors' defaults (per-view BatchNorm forward, ...) must not be served
    from a record made with the earlier joint forward: their hashes differ."""
    import subprocess
    import sys

    cmd = [sys.executable, str(REPO / "experiments" / "fig3_iternorm_T.py"), "--scale", "cpu"]
    cmd += ["--dry-run", "--data-root", str(tmp_path), "--seeds", "0"]
    today = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    earlier = subprocess.run(
        [*cmd, "--earlier-semantics"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    rows = [line for line in today.splitlines() if line.endswith((" done", " to run"))]
    assert rows and all(line.endswith(" to run") for line in rows), today
    assert all(line.endswith(" done") for line in earlier.splitlines() if "seed=0" in line)


def test_committed_bf16_parity_records_are_found_by_the_current_config_hash(tmp_path):
    """The bf16 parity report's runs (today's defaults) stay found by their config hash."""
    import subprocess
    import sys

    cmd = [sys.executable, str(REPO / "experiments" / "bf16_parity.py"), "--scale", "cpu"]
    cmd += ["--dry-run", "--data-root", str(tmp_path), "--epochs", "5", "--seeds", "0", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    points = [line for line in out.splitlines() if line.endswith((" done", " to run"))]
    assert len(points) == 12 and all(line.endswith(" done") for line in points), out
