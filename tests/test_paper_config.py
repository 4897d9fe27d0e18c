"""config/paper.yaml runs end to end on Stable Diffusion v1.5's exact architecture, offline.

SD v1.5's modules with random weights (migros.diffusion.sd15_architecture) sit in a Hugging Face cache under a
temporary HF_HOME, ResNet-18 (random weights) in a temporary TORCH_HOME, and phantoms in the real BraTS 2021 and
PI-CAI layouts in folders that paper.yaml's roots point to. The real rules run with paper.yaml plus an override
file that only shrinks sizes: 4 training slices per dataset at batch 3, 1 epoch (2 for the PI-CAI SeLoRA method
with its own epochs), a Fisher trial every 2 steps, 4 images per method with 2 sampler steps, 1 classifier epoch,
the privacy audit at one timestep and noise draw. One method per dataset, so that both kinds run: BraTS fine-tunes
LoRA r4, PI-CAI SeLoRA `selora_e150`, one of the paper's methods that set their own epochs.

The DAG runs at 64 px (8×8 latents: the same modules on smaller activations), because at paper.yaml's 224 px a
CPU core needs minutes per job for a handful of images (the VAE dominates) and the DAG alone took ~32 minutes of
`make test`'s 30. The paper's geometry is checked apart from the DAG, by the stage functions the rules call: a
fine-tuning step and sampling at 224 px (28×28 latents). About 9 minutes on 2 cores. The run is set up in
tests/paper_run.py and starts with the session (conftest.py), beside the tests that come before this module.
"""

import json

import numpy as np
import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from paper_run import DAG_IMAGE_SIZE, METHODS, PAPER

from migros.diffusion.base_model import BaseModelSettings, prepare_base_model
from migros.diffusion.finetune import TrainingSettings, run_finetune_stage
from migros.diffusion.generate import GenerationSettings, run_generate_stage
from migros.diffusion.model_ids import SD15_ID
from migros.diffusion.probe import PROBE_FILE, reload_error


def test_paper_config_names_the_downloadable_sd15():
    assert PAPER["base_model"]["source"] == SD15_ID == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_every_stage_runs_on_both_datasets(paper_run):
    workdir, _ = paper_run
    metrics = pd.read_csv(workdir / "results/metrics.csv")
    for dataset, methods in METHODS.items():
        rows = metrics[metrics.dataset == dataset]
        assert set(rows[rows.metric == "fid"].method) == {"no_adaptation", "real_train", "vae_reconstruction",
                                                          "real_reserve", *methods}
        synthetic_only = {f"synthetic_only:{method}" for method in ("no_adaptation", "real_reserve", *methods)}
        assert set(rows[rows.metric == "classifier_auc"].method) == {
            "real_only", *methods, "real_reserve", "vae_reconstruction", *synthetic_only}
        audited = rows[rows.metric == "mi_loss_difference_auc"]
        assert set(audited.method) == set(methods) and audited.value.between(0, 1).all()
        for method in ["no_adaptation", *methods]:
            manifest = pd.read_csv(workdir / f"results/{dataset}/postprocess/{method}/manifest.csv")
            assert len(manifest) == 4 and manifest.label.sum() == 2
            with Image.open(workdir / manifest.raw_file.iloc[0]) as image:
                assert image.size == (DAG_IMAGE_SIZE,) * 2
    assert (workdir / "results/tables/fid.html").is_file()
    assert (workdir / "report.html").stat().st_size > 100_000


def test_fine_tunes_adapt_every_linear_layer_of_sd15_for_their_own_epochs(paper_run):
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


def test_sd15_fine_tunes_and_samples_at_the_papers_224_px(paper_run, tmp_path, monkeypatch):
    """The stage functions of the finetune and generate rules at paper.yaml's image size on SD v1.5's architecture:
    one LoRA step on two of the DAG's BraTS slices (the fine-tune's loader resizes them to 224 px), its adapter
    written, reloaded and checked by the generate stage, which samples one image per class at 224 px."""
    workdir, hf_home = paper_run
    monkeypatch.chdir(workdir)  # the slice paths in the prompt files are relative to the run's folder
    # SD v1.5 from the run's cache folder, as a base_model rule records a local pipeline (this process's hub cache
    # is not the run's HF_HOME; the demo settings go unused)
    (snapshot,) = (hf_home / "hub").glob("models--*/snapshots/*")
    demo = {"image_size": 64, "seed": 0, "corpus_size": 1, "vae_steps": 1, "unet_steps": 1, "latent_downsampling": 8}
    prepare_base_model(BaseModelSettings.from_config({"source": str(snapshot), "demo": demo}), tmp_path / "base_model")
    image_size = PAPER["datasets"]["brats"]["image_size"]
    assert image_size == 224
    prompts = pd.read_csv("results/brats/prompts/train_prompts.csv")
    prompts.groupby("label").head(1).to_csv(tmp_path / "train_prompts.csv", index=False)
    one_replicate = {key: value for key, value in PAPER["finetune"].items() if key != "replicates"}  # as a job's
    settings = TrainingSettings.from_config({**one_replicate, "epochs": 1, "batch_size": 2, "checkpoint_every": 1})
    run_finetune_stage(
        base_model_dir=tmp_path / "base_model", train_prompts_csv=tmp_path / "train_prompts.csv",
        method_name="lora_r4", method=PAPER["methods"]["lora_r4"], settings=settings, image_size=image_size,
        checkpoint_dir=tmp_path / "checkpoints", adapter_dir=tmp_path / "adapter", loss_csv=tmp_path / "loss.csv",
        rank_history_csv=tmp_path / "rank_history.csv", summary_json=tmp_path / "summary.json",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["adapted_layers"] == 256
    probe = torch.load(tmp_path / "adapter" / PROBE_FILE, weights_only=True)
    assert probe["trained"].shape[-2:] == (image_size // 8,) * 2  # the probe's output: 28×28 latents
    generation_prompts = pd.read_csv("results/brats/prompts/generation_prompts.csv").groupby("label").head(1)
    generation_prompts.to_csv(tmp_path / "generation_prompts.csv", index=False)
    sampler = {key: PAPER["generation"][key] for key in ("guidance_scale", "scheduler")}
    run_generate_stage(
        base_model_dir=tmp_path / "base_model", adapter_dir=tmp_path / "adapter",
        prompts_csv=tmp_path / "generation_prompts.csv",
        settings=GenerationSettings.from_config({**sampler, "steps": 1, "batch_size": 2}), image_size=image_size,
        images_dir=tmp_path / "images", manifest_csv=tmp_path / "manifest.csv",
    )
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert sorted(manifest.label) == [0, 1]
    for file in manifest.file:
        with Image.open(file) as image:
            assert image.size == (image_size, image_size)
            assert np.asarray(image).std() > 0  # an image, not a constant
