"""Only the stages a config change touches rerun: Snakemake's own dry run (-n) of an edited copy of the tiny config
on the session's finished run (conftest.py), read job by job with the reasons Snakemake gives.

Each test writes its config to a new file in the run folder and only dry-runs, so the run itself stays finished
and the tests are independent of each other and of their order. That a second invocation with the unchanged
config has nothing to do is test_workflow.py::test_second_invocation_has_nothing_to_do.
"""

from pathlib import Path

import pytest
import yaml
from workflow_run import Job, dry_run, job, tiny_config

DATASETS = ("brats", "picai")
# Rules that no change below may rerun: the data, the base model and the real-image FID statistics.
UPSTREAM = {"demo_data", "slices", "dataset_overview", "base_model", "inception_weights", "fid_reference", "fid_floor"}
PER_GENERATED_SET = ("generate", "postprocess", "fid", "memorisation", "sample_grid", "privacy_audit")
AGGREGATES = {job("metrics"), job("report_tables"), job("all")}
SEEDS = tuple(str(seed) for seed in tiny_config()["classifier"]["seeds"])  # as the wildcards name them


def classifier_jobs(dataset: str) -> set[Job]:
    """A dataset's classifier: a job per seed, the job that gathers them and its ROC curves."""
    return {job("classifier", dataset=dataset), job("roc_curves", dataset=dataset)} | {
        job("classifier_seed", dataset=dataset, seed=seed) for seed in SEEDS}


def planned_jobs(run: Path, config: dict, name: str) -> dict[Job, str]:
    """Snakemake's dry run of `config`, written to run/{name}.yaml, on the finished run: {job: reason}."""
    (run / f"{name}.yaml").write_text(yaml.safe_dump(config))
    jobs = dry_run(run, "--configfile", f"{name}.yaml")
    assert jobs, "the dry run plans no job"
    return jobs


def generated_set(dataset: str, method: str) -> set[Job]:
    """The jobs of one generated image set: generation and everything that reads only that set."""
    return {job(rule, dataset=dataset, method=method) for rule in PER_GENERATED_SET}


def reader_study_packs(*datasets: str) -> set[Job]:
    """The packs that read the SeLoRA and GAN sets (tiny.yaml's selora_l1.00 and cgan on both datasets)."""
    return {job("reader_study_pack", dataset=dataset) for dataset in datasets}


def method_branch(dataset: str, method: str) -> set[Job]:
    return {job("finetune", dataset=dataset, method=method)} | generated_set(dataset, method)


def assert_only_changes_rerun(planned: dict[Job, str], expected: set[Job], changed: dict[Job, str]) -> None:
    """Exactly `expected` is planned, nothing upstream; each job of `changed` for its own reason (a substring),
    every other job only because a job it reads from reruns."""
    assert {rule for rule, _ in planned} & UPSTREAM == set()
    assert set(planned) == expected
    for changed_job, reason in changed.items():
        assert reason in planned[changed_job], planned[changed_job]
    for other_job in expected - set(changed):
        assert "Input files updated by another job" in planned[other_job], (other_job, planned[other_job])


def test_changing_one_methods_lambda_reruns_only_that_methods_branch(finished_run):
    config = tiny_config()
    config["methods"]["selora_l1.00"]["threshold"] = 1.02
    planned = planned_jobs(finished_run, config, "rerun_lambda")
    # both tiny datasets fine-tune selora_l1.00 and augment their classifier with it
    expected = AGGREGATES | {
        job_ for dataset in DATASETS
        for job_ in method_branch(dataset, "selora_l1.00") | classifier_jobs(dataset) | {
            job("training_curves", dataset=dataset), job("privacy_figure", dataset=dataset)}
    } | reader_study_packs(*DATASETS)
    changed = {job("finetune", dataset=dataset, method="selora_l1.00"): "Params have changed" for dataset in DATASETS}
    assert_only_changes_rerun(planned, expected, changed)
    assert all("'threshold': 1.02" in planned[finetune] for finetune in changed)


@pytest.mark.parametrize("augments_classifier", [False, True], ids=["fidelity_only", "in_classifier_methods"])
def test_adding_a_method_adds_only_its_branch_and_the_aggregates_that_list_it(finished_run, augments_classifier):
    """The classifier jobs of the dataset rerun either way: their prompt-fidelity table scores every generated set,
    not only the classifier_methods; the other dataset is untouched."""
    config = tiny_config()
    config["methods"]["lora_r8"] = {"kind": "lora", "rank": 8, "alpha": 8}
    config["datasets"]["brats"]["methods"].append("lora_r8")
    if augments_classifier:
        config["datasets"]["brats"]["classifier_methods"].append("lora_r8")
    planned = planned_jobs(finished_run, config, f"rerun_new_method_{augments_classifier}")
    expected = AGGREGATES | method_branch("brats", "lora_r8") | classifier_jobs("brats") | {
        job("training_curves", dataset="brats"), job("privacy_figure", dataset="brats")}
    changed = {job_: "Missing output files" for job_ in method_branch("brats", "lora_r8")}
    changed |= {job(rule, dataset="brats"): "Set of input files has changed" for rule in ("training_curves", "privacy_figure")}
    changed |= {job("classifier_seed", dataset="brats", seed=seed): "Set of input files has changed" for seed in SEEDS}
    assert_only_changes_rerun(planned, expected, changed)


def test_adding_a_classifier_seed_runs_only_that_seed_and_the_gathering_jobs(finished_run):
    config = tiny_config()
    config["classifier"]["seeds"] = [0, 1, 2]
    planned = planned_jobs(finished_run, config, "rerun_classifier_seeds")
    new_seeds = {job("classifier_seed", dataset=dataset, seed="2") for dataset in DATASETS}
    expected = AGGREGATES | new_seeds | {job(rule, dataset=dataset) for dataset in DATASETS
                                         for rule in ("classifier", "roc_curves")}
    changed = {seed_job: "Missing output files" for seed_job in new_seeds}
    changed |= {job("classifier", dataset=dataset): "Set of input files has changed" for dataset in DATASETS}
    assert_only_changes_rerun(planned, expected, changed)


def test_changing_the_classifier_budget_reruns_every_seed_but_no_finetune_or_generation(finished_run):
    config = tiny_config()
    config["classifier"]["budget"] = {"steps": 3}
    planned = planned_jobs(finished_run, config, "rerun_classifier_budget")
    expected = AGGREGATES | {job_ for dataset in DATASETS for job_ in classifier_jobs(dataset)}
    changed = {job("classifier_seed", dataset=dataset, seed=seed): "Params have changed"
               for dataset in DATASETS for seed in SEEDS}
    assert_only_changes_rerun(planned, expected, changed)


def test_changing_prompt_thresholds_reruns_that_datasets_prompts_and_downstream_but_not_slices(finished_run):
    config = tiny_config()
    config["datasets"]["picai"]["prompts"]["size_thresholds"].update(small_below=0.004, large_from=0.02)
    planned = planned_jobs(finished_run, config, "rerun_prompt_thresholds")
    expected = AGGREGATES | {job("train_prompts", dataset="picai"),
                             job("generation_prompts", dataset="picai", replicate=""),
                             job("training_curves", dataset="picai"), *classifier_jobs("picai"),
                             *generated_set("picai", "no_adaptation"), job("privacy_figure", dataset="picai"),
                             # the GAN trains on the training prompts' labels and samples the generation prompts
                             *(generated_set("picai", "cgan") - {job("generate", dataset="picai", method="cgan")}),
                             job("gan", dataset="picai", method="cgan")}
    expected |= {job_ for method in ("lora_r4", "selora_l1.00") for job_ in method_branch("picai", method)}
    expected |= reader_study_packs("picai")
    # the audit's auxiliary non-members and the positive control get their prompts from the same settings
    expected |= {job("proxy_non_members", dataset="picai"), job("real_reserve", dataset="picai")}
    expected |= generated_set("picai", "real_reserve") - {job(rule, dataset="picai", method="real_reserve")
                                                          for rule in ("generate", "privacy_audit")}
    assert_only_changes_rerun(planned, expected, {job(rule, dataset="picai"): "Params have changed"
                                                  for rule in ("train_prompts", "proxy_non_members", "real_reserve")})


def test_changing_sampler_steps_reruns_generation_but_no_prompts_or_finetune(finished_run):
    config = tiny_config()
    config["generation"]["steps"] = 3
    planned = planned_jobs(finished_run, config, "rerun_sampler_steps")
    expected = AGGREGATES | {job_ for dataset in DATASETS for job_ in classifier_jobs(dataset) | {
        job("privacy_figure", dataset=dataset)}}
    diffusion_sets = [(dataset, method) for dataset in DATASETS for method in ("no_adaptation", "lora_r4", "selora_l1.00")]
    diffusion_sets.append(("brats", "lora_r4_private"))
    expected |= {job_ for dataset, method in diffusion_sets for job_ in generated_set(dataset, method)}
    expected |= reader_study_packs(*DATASETS)
    changed = {job("generate", dataset=dataset, method=method): "Params have changed" for dataset, method in diffusion_sets}
    assert_only_changes_rerun(planned, expected, changed)


def test_changing_the_privacy_defence_reruns_only_the_defended_methods_branch(finished_run):
    config = tiny_config()
    config["methods"]["lora_r4_private"]["privacy"]["alpha"] = 2.0
    planned = planned_jobs(finished_run, config, "rerun_defence")
    expected = AGGREGATES | method_branch("brats", "lora_r4_private") | classifier_jobs("brats") | {
        job(rule, dataset="brats") for rule in ("training_curves", "privacy_figure")}
    changed = {job("finetune", dataset="brats", method="lora_r4_private"): "Params have changed"}
    assert_only_changes_rerun(planned, expected, changed)



def test_a_second_training_replicate_runs_only_that_replicate(finished_run):
    """Replicate 1 of every method is new (`<method>@1`, trained with seed + 1, generating from its own prompts and
    image seeds); replicate 0 and everything upstream stay. The classifier's seed jobs rerun: each trains every condition of its seed, and the new
    replicates augment it too."""
    config = tiny_config()
    config["finetune"]["replicates"] = 2
    planned = planned_jobs(finished_run, config, "rerun_replicates")
    methods = {dataset: config["datasets"][dataset]["methods"] for dataset in DATASETS}
    new = {job_ for dataset in DATASETS for method in methods[dataset] if method != "cgan"
           for job_ in method_branch(dataset, f"{method}@1")}
    new |= {job_ for dataset in DATASETS for job_ in generated_set(dataset, "cgan@1") | {
        job("gan", dataset=dataset, method="cgan@1")}} - {job("generate", dataset=dataset, method="cgan@1")
                                                          for dataset in DATASETS}  # the gan rule writes its set
    new |= {job("generation_prompts", dataset=dataset, replicate="@1") for dataset in DATASETS}  # its own images
    expected = AGGREGATES | new | {job_ for dataset in DATASETS for job_ in classifier_jobs(dataset) | {
        job("training_curves", dataset=dataset), job("privacy_figure", dataset=dataset)}}
    changed = {job_: "Missing output files" for job_ in new if job_[0] in ("finetune", "gan", "generation_prompts")}
    changed |= {job("classifier_seed", dataset=dataset, seed=seed): "Set of input files has changed"
                for dataset in DATASETS for seed in SEEDS}
    assert_only_changes_rerun(planned, expected, changed)
