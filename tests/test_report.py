"""``specssl report``: one self-contained HTML page from real tiny runs, and that page in a real
headless browser (Chromium from the OS packages; skipped where there is none)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import TINY_RUN

from specssl.cli import main
from specssl.eval.report import build_report, config_differences, load_run, read_eigenvalues
from specssl.train.config import load_config
from specssl.train.run import pretrain

EPOCHS = 2
SHORT = [
    *TINY_RUN,
    f"trainer.max_epochs={EPOCHS}",
    "monitor.spectrum_every=1",
    "monitor.spectrum_samples=128",
    "monitor.knn_every=1",
    "monitor.knn_k=[20]",
    "trainer.log_every_n_steps=1",
]

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two tiny runs that differ in method and alarm mode (INTL, then IterNorm-only)."""
    tmp = tmp_path_factory.mktemp("runs")
    out = []
    for name, extra in (
        ("intl", ["method.name=intl", "monitor.collapse_alarm=warn"]),
        ("iternorm", ["method.name=iternorm", "monitor.collapse_alarm=off"]),
    ):
        cfg = load_config(None, [*SHORT, *extra, f"output_dir={tmp}", f"run_name={name}"])
        out.append(pretrain(cfg, logger=True).run_dir)
    return out


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> Path:
    return build_report(runs, tmp_path_factory.mktemp("report") / "report.html")


def test_report_embeds_every_plot_and_loads_nothing(page, runs):
    text = page.read_text()
    images = IMG.findall(text)
    titles = [t for _, t in images]
    # spectra of each run, the label-free metrics, kNN / probe, training loss
    assert titles == [
        "intl: spectra of Z and Ẑ across epochs",
        "iternorm: spectra of Z and Ẑ across epochs",
        "label-free metrics over epochs (epoch 0: random init)",
        "kNN and linear-probe accuracy over epochs",
        "training loss",
    ]
    for data, _ in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(re.findall(r"<img\b", text)) == len(images)  # every image is embedded
    assert not re.search(r"(src|href)=\"(?!data:)", text)  # nothing to fetch
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_report_shows_config_differences_and_verdicts(page, runs):
    text = page.read_text()
    assert "<td>method.name</td><td>intl</td><td>iternorm</td>" in text
    assert "<td>monitor.collapse_alarm</td><td>warn</td><td>off</td>" in text
    assert "<td>data.batch_size</td>" not in text  # the same in both runs
    assert "verdict of the run&#x27;s collapse alarm" in text  # INTL: the alarm's file
    assert "the run&#x27;s alarm was off" in text  # IterNorm: the rule applied by the report
    assert text.count('class="verdict ') == 2


def test_report_reads_the_runs_records(runs):
    intl = load_run(runs[0])
    assert [s["epoch"] for s in intl.scalars] == list(range(EPOCHS + 1))
    evals = read_eigenvalues(runs[0] / "spectrum" / "eigenvalues.csv")
    assert sorted(evals) == ["z", "zhat"] and sorted(evals["z"]) == list(range(EPOCHS + 1))
    assert len(evals["z"][EPOCHS]) == 16  # method.proj_output_dim of TINY_RUN
    assert evals["z"][EPOCHS] == sorted(evals["z"][EPOCHS], reverse=True)
    assert intl.scalars[-1]["z/rankme"] == pytest.approx(
        float(_results(runs[0])["spectrum"]["z/rankme"]), rel=1e-12
    )
    assert config_differences([{"a": {"b": 1}}, {"a": {"b": 1}, "c": 2}]) == [("c", [None, 2])]


def _results(run: Path) -> dict:
    import json

    return json.loads((run / "results.json").read_text())


def test_cli_writes_the_report_and_rejects_a_non_run(runs, tmp_path, capsys):
    assert main(["report", str(runs[0])]) == 0
    assert (runs[0] / "report.html").is_file()
    assert f"report: {runs[0] / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and len(err.strip().splitlines()) == 1


CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


def headless(url: str, tmp: Path) -> tuple[str, list[str]]:
    """``(DOM after load, console messages)`` of ``url`` in headless Chromium."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


#: Appended to a copy of the page in the browser test: counts the images the browser decoded.
PROBE = (
    "<script>window.addEventListener('load', () => document.body.setAttribute('data-decoded',"
    " [...document.images].filter(i => i.complete && i.naturalWidth > 0).length));</script>"
)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install -y chromium)")
def test_report_in_a_headless_browser(page, tmp_path):
    # The console capture must see an error when there is one, else its silence means nothing.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('planted');</script></body></html>")
    _, console = headless(bad.as_uri(), tmp_path)
    assert any("planted" in line for line in console), console
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom, console = headless(probed.as_uri(), tmp_path)
    assert console == []
    assert re.search(r'data-decoded="5"', dom), dom[:300]
    assert "<h2>Spectra of Z and Ẑ across epochs</h2>" in dom
    assert dom.count("<img ") == 5 and "Collapse verdict" in dom
