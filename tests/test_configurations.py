"""The three named configurations: the demo that `make report` runs, the phantom study and the paper. Each must
resolve into a DAG in a dry run, and the demo must cover every stage and every method kind."""

import re
from collections import Counter

import yaml
from workflow_run import REPO, copy_workflow, dry_run, validated

METHOD_KINDS = {"lora", "selora", "arena", "adalora", "gan"}  # stylegan3 needs a GPU and the user's checkout


def planned_jobs(tmp_path, *args) -> Counter:
    tmp_path.mkdir(parents=True, exist_ok=True)
    workdir = copy_workflow(tmp_path)
    jobs = Counter(rule for rule, _ in dry_run(workdir, "--forceall", *args))
    del jobs["all"]
    return jobs


def test_make_report_runs_the_demo_and_takes_another_configuration():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CONFIG \?= config/config\.yaml$", makefile, re.MULTILINE)
    assert "--configfile $(CONFIG)" in makefile


def test_demo_runs_every_stage_and_every_method_kind(tmp_path):
    config = validated(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    run_methods = {method for dataset in config["datasets"].values() for method in dataset["methods"]}
    assert {config["methods"][method]["kind"] for method in run_methods} == METHOD_KINDS
    assert any("privacy" in config["methods"][method] for method in run_methods), "no defended method"

    jobs = planned_jobs(tmp_path / "demo")
    study = planned_jobs(tmp_path / "study", "--configfile", "config/study.yaml")
    assert set(jobs) == set(study), "the demo skips a stage the study runs"
    assert jobs["privacy_audit"] == jobs["generate"] + jobs["gan"]  # every generated set is audited
    assert jobs["proxy_non_members"] >= 1 and jobs["classifier_seed"] >= 3


def test_demo_is_smaller_than_the_study_where_the_report_can_still_be_read():
    """At least 200 images per FID set and 3 classifier seeds, so every number keeps an interval."""
    demo = validated(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    study = validated(yaml.safe_load((REPO / "config/study.yaml").read_text()))
    scored = demo["generation"]["images"] if demo["fid"]["max_generated"] is None else demo["fid"]["max_generated"]
    assert scored >= 200 and demo["generation"]["images"] >= scored
    assert len(demo["classifier"]["seeds"]) >= 3
    assert demo["fid"]["bootstrap_resamples"] > 0 and demo["privacy_audit"]["bootstrap_resamples"] > 0
    assert demo["generation"]["images"] < study["generation"]["images"]
    assert len(study["classifier"]["seeds"]) == 5 and study["classifier"]["train_on_synthetic"] == "every_generated_set"


def test_study_resolves_with_every_kind_on_both_datasets(tmp_path):
    jobs = planned_jobs(tmp_path, "--configfile", "config/study.yaml")
    study = yaml.safe_load((REPO / "config/study.yaml").read_text())
    assert {dataset["loader"] for dataset in study["datasets"].values()} == {"brats", "picai"}
    for name, dataset in study["datasets"].items():
        assert {study["methods"][method]["kind"] for method in dataset["methods"]} == METHOD_KINDS, name
    assert jobs["classifier_seed"] == 2 * 5
