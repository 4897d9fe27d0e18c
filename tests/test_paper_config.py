"""config/paper.yaml runs end to end on Stable Diffusion v1.5's exact architecture, offline.

SD v1.5's modules with random weights (migros.diffusion.sd15_architecture) sit in a Hugging Face cache under a
temporary HF_HOME, ResNet-18 (random weights) in a temporary TORCH_HOME, and phantoms in the real BraTS 2021 and
PI-CAI layouts in folders that paper.yaml's roots point to. The real rules run with paper.yaml plus an override
file that only shrinks sizes: 4 training slices per dataset at batch 3, 1 epoch (2 for the PI-CAI SeLoRA method
with its own epochs), a Fisher trial every 2 steps, 4 images per method with 2 sampler steps, 1 classifier epoch.
BraTS runs at the paper's 224 px; PI-CAI at 64 px (8×8 latents), the same modules on smaller activations, because
at 224 px a CPU core needs ~3 minutes to generate 4 images (VAE decoding dominates) and the test would take ~30
minutes. Each dataset fine-tunes a LoRA and a SeLoRA method; PI-CAI's SeLoRA method is one of the paper's that set
their own epochs; the privacy audit at one timestep and noise draw. Takes about 20 minutes on 2 cores.
"""

import json
import os

import pandas as pd
import pytest
import torch
import torchvision
import yaml
from diffusers import StableDiffusionPipeline
from PIL import Image
from workflow_run import REPO, copy_workflow, snakemake

from migros.diffusion.model_ids import SD15_ID
from migros.diffusion.probe import PROBE_FILE, reload_error
from migros.diffusion.sd15_architecture import build_sd15_pipeline, write_to_hub_cache
from migros.phantoms.brain import write_brats_phantoms
from migros.phantoms.prostate import write_picai_phantoms

METHODS = {"brats": ["lora_r4", "selora_l1.04"], "picai": ["lora_r8", "selora_e150"]}
PAPER = yaml.safe_load((REPO / "config/paper.yaml").read_text())
IMAGE_SIZES = {"brats": PAPER["datasets"]["brats"]["image_size"], "picai": 64}  # only PI-CAI is shrunk


def shrink(data_roots: dict[str, str]) -> dict:
    """Overrides of paper.yaml that only make the run smaller; Snakemake merges them key by key."""
    datasets = {
        name: {"root": root, "split": {"train": 4, "test": 4}, "methods": METHODS[name], "classifier_methods": METHODS[name][1:]}
        for name, root in data_roots.items()
    }
    datasets["picai"]["image_size"] = IMAGE_SIZES["picai"]
    return {
        "datasets": datasets,
        "finetune": {"epochs": 1, "checkpoint_every": 1},
        "methods": {"selora_l1.04": {"expand_every": 2}, "selora_e150": {"expand_every": 2, "epochs": 2}},
        "generation": {"images": 4, "steps": 2, "batch_size": 4},
        "fid": {"kid_subsets": 2, "kid_subset_size": 2, "batch_size": 8},
        "classifier": {"budget": {"epochs": 1}, "seeds": [0]},
        # one timestep and draw: 2 UNet passes per audited slice and model
        "privacy_audit": {"timesteps": [500], "noise_draws": 1, "batch_size": 8, "bootstrap_resamples": 50},
    }


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("paper"))
    hf_home, torch_home = workdir / "hf_home", workdir / "torch_home"
    write_to_hub_cache(build_sd15_pipeline(seed=0), hf_home / "hub", SD15_ID)
    resnet = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    resnet.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    roots = {"brats": workdir / "data/BraTS2021", "picai": workdir / "data/PI-CAI"}
    write_brats_phantoms(roots["brats"], 24, (60, 60, 40), seed=2021)
    write_picai_phantoms(roots["picai"], 50, (64, 64, 16), (3.0, 3.0, 3.0), seed=2022)
    (workdir / "shrink.yaml").write_text(yaml.safe_dump(shrink({name: str(root) for name, root in roots.items()})))
    env = {**os.environ, "HF_HOME": str(hf_home), "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1"}
    configs = ("--configfile", "config/paper.yaml", "shrink.yaml")
    result = snakemake(workdir, *configs, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = snakemake(workdir, *configs, "--report", "report.html", env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    return workdir, hf_home


def test_paper_config_names_the_downloadable_sd15():
    assert PAPER["base_model"]["source"] == SD15_ID == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_every_stage_runs_on_both_datasets(paper_run):
    workdir, _ = paper_run
    metrics = pd.read_csv(workdir / "results/metrics.csv")
    for dataset, methods in METHODS.items():
        rows = metrics[metrics.dataset == dataset]
        assert set(rows[rows.metric == "fid"].method) == {"no_adaptation", "real_train", "vae_reconstruction", *methods}
        synthetic_only = {f"synthetic_only:{method}" for method in ("no_adaptation", *methods)}
        assert set(rows[rows.metric == "classifier_auc"].method) == {
            "real_only", methods[1], "vae_reconstruction", *synthetic_only}
        audited = rows[rows.metric == "mi_loss_difference_auc"]
        assert set(audited.method) == set(methods) and audited.value.between(0, 1).all()
        for method in ["no_adaptation", *methods]:
            manifest = pd.read_csv(workdir / f"results/{dataset}/postprocess/{method}/manifest.csv")
            assert len(manifest) == 4 and manifest.label.sum() == 2
            with Image.open(workdir / manifest.raw_file.iloc[0]) as image:
                assert image.size == (IMAGE_SIZES[dataset],) * 2
    assert (workdir / "results/tables/fid.html").is_file()
    assert (workdir / "report.html").stat().st_size > 100_000


def test_fine_tunes_ran_at_the_paper_geometry_with_their_own_epochs(paper_run):
    workdir, _ = paper_run
    base = json.loads((workdir / "results/base_model/base_model.json").read_text())
    assert base["source"] == SD15_ID
    for dataset, methods in METHODS.items():
        for method in methods:
            summary = json.loads((workdir / f"results/{dataset}/finetune/{method}/summary.json").read_text())
            epochs = 2 if method == "selora_e150" else 1
            assert summary["steps"] == 2 * epochs  # 4 slices at batch 3: 2 steps per epoch
            assert summary["mixed_precision"] == "no" and summary["device"] == "cpu"
            history = pd.read_csv(workdir / f"results/{dataset}/finetune/{method}/rank_history.csv")
            final_ranks = history.sort_values("step").groupby("layer")["rank"].last()
            # every linear layer: 184 in SD v1.5's UNet, 72 in the 12 layers of CLIP ViT-L/14's text encoder
            assert len(final_ranks) == summary["adapted_layers"] == 256
            if method.startswith("selora"):
                assert final_ranks.max() > 1 and (history.step > 0).any()  # the Fisher trials grew ranks
            else:
                assert set(final_ranks) == {int(method.removeprefix("lora_r"))}


def test_every_adapter_reloads_into_a_stock_pipeline_and_reproduces_its_training_output(paper_run):
    workdir, hf_home = paper_run
    pipeline = StableDiffusionPipeline.from_pretrained(
        SD15_ID, cache_dir=hf_home / "hub", local_files_only=True, safety_checker=None, dtype=torch.float32
    )
    for dataset, methods in METHODS.items():
        for method in methods:
            adapter = workdir / f"results/{dataset}/finetune/{method}/adapter"
            pipeline.load_lora_weights(adapter)
            error = reload_error(pipeline, adapter / PROBE_FILE)
            pipeline.unload_lora_weights()
            assert error < 1e-3, (dataset, method, error)
            probe = torch.load(adapter / PROBE_FILE, weights_only=True)
            assert (probe["trained"] - probe["base"]).abs().max() > 0  # the adapter did change the model
            log = (workdir / f"results/logs/generate/{dataset}_{method}.log").read_text()
            assert "adapter reload check passed" in log
