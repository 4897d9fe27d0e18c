"""The Snakemake workflow end to end on a tiny configuration, run by Snakemake itself."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "scripts", "envs"]


def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    brats, picai = config["datasets"]["brats"], config["datasets"]["picai"]
    brats["demo"].update(cases=24, shape=[60, 60, 40])
    picai["demo"].update(cases=50, shape=[64, 64, 16], spacing=[3.0, 3.0, 3.0])
    for dataset in (brats, picai):
        dataset["image_size"] = 32
        dataset["split"].update(train=4, test=4)
    config["base_model"]["demo"] = {"image_size": 32, "seed": 0, "corpus_size": 64, "vae_steps": 4, "unet_steps": 4}
    config["finetune"].update(epochs=1, batch_size=2, checkpoint_every=2)
    config["methods"] = {name: config["methods"][name] for name in ("lora_r4", "selora_l1.00")}
    config["methods"]["selora_l1.00"]["expand_every"] = 2
    for dataset in (brats, picai):
        dataset["methods"] = ["lora_r4", "selora_l1.00"]
    config["generation"].update(images=20, steps=2, batch_size=10)
    for dataset in (brats, picai):
        dataset["classifier_methods"] = ["selora_l1.00"]
    config["fid"].update(max_generated=8, kid_subsets=5)
    config["classifier"].update(epochs=1, seeds=[0, 1])
    return config


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, capture_output=True, text=True
    )


def copy_workflow(destination: Path) -> Path:
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny_config()))
    result = snakemake(workdir, "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_demo_run_writes_slices_and_prompts(finished_run):
    for dataset in ("brats", "picai"):
        metadata = pd.read_csv(finished_run / f"results/{dataset}/slices/metadata.csv")
        assert (metadata.groupby("split").label.sum()[["train", "test"]] == 2).all()
        assert all((finished_run / path).is_file() for path in metadata.image)
        prompts = pd.read_csv(finished_run / f"results/{dataset}/prompts/generation_prompts.csv")
        assert len(prompts) == 20 and prompts.label.sum() == 10
        assert (finished_run / f"results/{dataset}/slices/overview.png").stat().st_size > 10_000
        assert (finished_run / f"results/logs/slices/{dataset}.log").is_file()
        assert (finished_run / f"results/benchmarks/slices/{dataset}.tsv").is_file()
    excluded = pd.read_csv(finished_run / "results/picai/slices/excluded.csv")
    assert len(excluded) > 0 and excluded.reason.notna().all()


def test_demo_run_evaluates_every_method(finished_run):
    metrics = pd.read_csv(finished_run / "results/metrics.csv")
    for dataset in ("brats", "picai"):
        rows = metrics[metrics.dataset == dataset]
        fid = rows[rows.metric == "fid"].set_index("method")
        assert set(fid.index) == {"no_adaptation", "lora_r4", "selora_l1.00", "real_train"}
        assert (fid.value > 0).all() and (fid.loc[["no_adaptation", "lora_r4", "selora_l1.00"], "n"] == 8).all()
        auc = rows[rows.metric == "classifier_auc"].set_index("method")
        assert set(auc.index) == {"real_only", "selora_l1.00"} and (auc.n == 2).all() and auc.value.between(0, 1).all()
        fidelity = rows[rows.metric == "fidelity_tumour_prompts"]
        assert set(fidelity.method) == {"no_adaptation", "lora_r4", "selora_l1.00"}
        assert rows[rows.metric == "memorisation_median_ssim"].value.between(-1, 1).all()
        for method in ("no_adaptation", "lora_r4", "selora_l1.00"):
            postprocessed = pd.read_csv(finished_run / f"results/{dataset}/postprocess/{method}/manifest.csv")
            assert len(postprocessed) == 20 and all((finished_run / path).is_file() for path in postprocessed.file)
            assert (finished_run / f"results/{dataset}/samples/{method}.png").is_file()
    fid_table = (finished_run / "results/tables/fid.html").read_text()
    assert "NOT comparable" in fid_table and "SHA-256" in fid_table


def test_report_is_written(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (finished_run / "report.html").stat().st_size > 100_000


def test_second_invocation_has_nothing_to_do(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_wrong_config_key_is_named(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = tiny_config()
    config["datasets"]["brats"]["image_sise"] = 64
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n")
    assert result.returncode != 0
    assert "image_sise" in result.stdout + result.stderr


def test_paper_config_resolves_on_phantom_folders(finished_run):
    """Dry run of config/paper.yaml with the dataset roots pointed at folders in the real layouts."""
    config = yaml.safe_load((finished_run / "config/paper.yaml").read_text())
    for dataset in ("brats", "picai"):
        config["datasets"][dataset]["root"] = str(finished_run / f"results/{dataset}/demo_data")
    (finished_run / "paper_on_phantoms.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(finished_run, "--configfile", "paper_on_phantoms.yaml", "-n", "--forceall")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {words[0]: int(words[1]) for words in map(str.split, result.stdout.splitlines())
            if len(words) == 2 and words[1].isdigit() and words[0] not in ("total", "all")}
    # 5 methods per dataset fine-tuned; each generates, and so does no_adaptation: 12 generated sets
    per_set = {"generate": 12, "postprocess": 12, "fid": 12, "memorisation": 12, "sample_grid": 12}
    per_dataset = {"slices": 2, "dataset_overview": 2, "prompts": 2, "fid_floor": 2, "classifier": 2,
                   "training_curves": 2}
    once = {"base_model": 1, "inception_weights": 1, "metrics": 1, "report_tables": 1}
    assert jobs == {**per_set, **per_dataset, **once, "finetune": 10, "fid_reference": 4}
