"""tools/check_report.py: the Snakemake HTML report opened in headless Chromium, every table and figure checked."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from workflow_run import snakemake, tiny_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools/check_report.py"
_spec = importlib.util.spec_from_file_location("check_report", SCRIPT)
check_report = sys.modules["check_report"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(check_report)

needs_chromium = pytest.mark.skipif(
    check_report.find_chromium() is None,
    reason="no Chromium (chromium, chromium-browser or $CHROMIUM): `apt-get install chromium` to run the browser check",
)


def run_check(report: Path, out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(report), "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def checks_by_name(out: Path) -> dict[str, dict]:
    return {check["name"]: check for check in json.loads((out / "checks.json").read_text())}


@pytest.mark.parametrize("cell, numeric", [
    ("12.5", True), ("0.81 ± 0.04", True), ("45 %", True), ("1e-3", True), ("−3.2", True), ("1,000", True),
    ("2.31 (paper: 1.9)", True), ("0.79 [0.49, 0.97]", True), ("−0.097 [−0.223, 0.029]", True),
    ("[0.1, 0.2]", False), ("0.5 [low, high]", False), ("–", False), ("nan", False), ("lora_r4", False), ("selora_l1.00", False),
    ("", False),
])
def test_numeric_cells_are_told_from_labels_and_placeholders(cell, numeric):
    assert check_report.is_numeric(cell) is numeric


def test_missing_chromium_names_the_debian_package(tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    env = {key: value for key, value in os.environ.items() if key != "CHROMIUM"} | {"PATH": str(tmp_path)}
    result = run_check(report, tmp_path / "out", env=env)
    assert result.returncode == 2
    assert "apt-get install chromium" in result.stderr


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory) -> Path:
    """A small Snakemake report with one good table, one table of placeholders only, a figure and a raw caption."""
    workdir = tmp_path_factory.mktemp("planted")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 200), dtype=np.uint8)).save(workdir / "src.png")
    (workdir / "good.src").write_text("<table><tr><th>method</th><th>FID</th></tr>"
                                      "<tr><td>lora_r4</td><td>41.2</td></tr></table>")
    (workdir / "empty.src").write_text("<table><tr><th>method</th><th>FID</th></tr>"
                                       "<tr><td>lora_r4</td><td>–</td></tr></table>")
    (workdir / "raw.rst").write_text("Figure made with {% raw %}{{ snakemake.config['unrendered'] }}{% endraw %}.\n")
    (workdir / "fine.rst").write_text("FID of each method.\n")
    (workdir / "Snakefile").write_text('''
rule all:
    input: "good.html", "empty.html", "figure.png"

rule tables:
    input: "good.src", "empty.src", "src.png"
    output:
        report("good.html", caption="fine.rst", category="Metrics", labels={"table": "good"}),
        report("empty.html", caption="fine.rst", category="Metrics", labels={"table": "placeholders"}),
        report("figure.png", caption="raw.rst", category="Figures", labels={"figure": "noise"}),
    shell: "cp good.src good.html && cp empty.src empty.html && cp src.png figure.png"
''')
    for args in ([], ["--report", "report.html"]):
        result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=workdir,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "report.html"


@needs_chromium
def test_planted_defects_fail_and_good_items_pass(planted_report, tmp_path):
    result = run_check(planted_report, tmp_path, "--expect-categories", "Metrics,Figures,Datasets")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = checks_by_name(tmp_path)
    assert "category 'Datasets' is missing from the report" in checks["landing page"]["failures"]
    good, empty = checks["Metrics / Other / good"], checks["Metrics / Other / placeholders"]
    assert good["passed"] and "1/2 numeric cells" in good["details"][0]
    assert empty["failures"] == ["table 1: placeholders where numbers should be, no numeric cell",
                                 "no table with a number on the page"]
    figure = checks["Figures / Other / noise"]
    assert figure["details"][0].startswith("<img> 200×120 px")
    assert any("unrendered markup" in failure for failure in figure["failures"])
    for check in checks.values():
        for screenshot in check["screenshots"]:
            assert Image.open(tmp_path / screenshot).size[0] >= 1440


@needs_chromium
def test_pipeline_report_shows_every_table_and_figure(finished_run, tmp_path):
    report = tmp_path / "report.html"  # written here, so the shared run folder stays as the run left it
    written = snakemake(finished_run, "--configfile", "tiny.yaml", "--report", str(report))
    assert written.returncode == 0, written.stderr[-3000:]
    result = run_check(report, tmp_path / "check")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    checks = checks_by_name(tmp_path / "check")
    kinds = [check["kind"] for check in checks.values()]
    # per dataset: overview figure, samples and memorisation of each scored set (no_adaptation, its methods and the
    # positive control), training curves, the privacy audit's scores, the VAE's reconstructions, the ROC curves
    scored_sets = [1 + len(dataset["methods"]) + 1 for dataset in tiny_config()["datasets"].values()]
    assert kinds.count("figure") == sum(1 + sets + 1 + sets + 1 + 1 + 1 for sets in scored_sets)
    # per dataset a summary page; tables evidence, fid, classifier, prompt fidelity, memorisation, privacy, adapters;
    # the config
    assert kinds.count("html page") == 2 + 7 + 1
    assert kinds.count("download") == 1  # metrics.csv
    fid = checks["Metrics / Other / FID and KID (Table 1)"]
    assert fid["screenshots"] and not any(re.search(r", 0/\d+ numeric", line) for line in fid["details"])
