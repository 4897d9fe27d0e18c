"""The reader study in the workflow: the pack built by the tiny run, the statistics rule once answers are exported.

The statistics rule reads only the exported answers, so it is run here in a fresh copy of the workflow with no
other result; the pack is checked in the session's finished tiny run (conftest.py)."""

import pandas as pd
import yaml
from figure_checks import drawn_fraction
from PIL import Image
from reader_study_packs import make_pack
from workflow_run import copy_workflow, dry_run, job, snakemake, tiny_config

from migros.evaluation.statistics import TIDY_COLUMNS
from migros.reader_study.pack_format import Pack
from migros.reader_study.store import StudyStore
from migros.report.metrics import collect_metrics


def exported_answers(pack: Pack, db, csv, readers=("alice", "bob")):
    """Every trial of each reader answered (the first method on odd trials), exported as the command line does."""
    store = StudyStore(db, pack)
    for reader in readers:
        store.add_reader(reader)
        while (trial := store.progress(reader).next_trial) is not None:
            store.record_answer(reader, trial.trial, ("left", "right")[trial.trial % 2], 2000)
    store.export(csv)
    store.close()
    return csv


def test_demo_run_builds_a_pack_of_the_best_selora_against_the_gan_per_dataset(finished_run):
    for dataset in ("brats", "picai"):
        pack = Pack.load(finished_run / f"results/{dataset}/reader_study/pack")
        assert pack.key["comparisons"] == [["selora_l1.00", "cgan"]]  # tiny.yaml's only SeLoRA and GAN
        assert len(pack.study["items"]) == 2 * 4 and not pack.study["power"]["meets_goal"]
        images = list((pack.folder / "images").iterdir())
        assert len(images) == 2 * 2 * 4 + 2 * 2
        with Image.open(images[0]) as image:
            assert (image.mode, image.size) == ("L", (256, 256))


def test_exported_answers_add_only_their_statistics_and_the_aggregates(finished_run, tmp_path):
    answers = exported_answers(Pack.load(finished_run / "results/brats/reader_study/pack"), tmp_path / "db.sqlite",
                               finished_run / f"answers_{tmp_path.name}.csv")
    config = tiny_config()
    config["reader_study"]["answers"] = {"brats": answers.name}
    (finished_run / f"{tmp_path.name}.yaml").write_text(yaml.safe_dump(config))
    planned = dry_run(finished_run, "--configfile", f"{tmp_path.name}.yaml")
    assert set(planned) == {job("reader_study_statistics", dataset="brats"), job("metrics"), job("report_tables"),
                            job("all")}  # no pack is rebuilt: answers are not among its settings


def test_statistics_rule_writes_tidy_rows_and_a_figure_that_metrics_gathers(tmp_path):
    (tmp_path / "workflow").mkdir()
    workdir = copy_workflow(tmp_path / "workflow")
    answers = exported_answers(Pack.load(make_pack(tmp_path)), tmp_path / "db.sqlite", workdir / "answers.csv")
    config = tiny_config()
    config["reader_study"].update(answers={"brats": answers.name}, bootstrap_resamples=200)
    (workdir / "study.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/brats/reader_study/statistics.csv", "results/brats/reader_study/preferences.png"]
    result = snakemake(workdir, *targets, "--configfile", "study.yaml")  # the option takes several files
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    statistics = pd.read_csv(workdir / targets[0])
    assert list(statistics.columns) == TIDY_COLUMNS and set(statistics.dataset) == {"brats"}
    pooled = statistics.set_index(["method", "metric"]).loc[("selora_l1.00 vs cgan", "reader_preference")]
    assert pooled.n == 2 * 8
    assert drawn_fraction(workdir / targets[1]) > 0.02
    metrics = collect_metrics({"reader_study": [("brats", None, workdir / targets[0])]})
    assert len(metrics) == len(statistics)
