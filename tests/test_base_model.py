"""Base model: SD's tokenizer rebuilt offline, the tiny demo pipeline round trip, offline loading errors, corpus."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from migros.diffusion.base_model import BaseModelError, load_pipeline
from migros.diffusion.clip_tokenizer import clip_tokenizer
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.demo.corpus import ORIENTATIONS, build_demo_corpus
from migros.diffusion.demo.pretraining import PRETRAINING_LOG, pretrain_demo_model
from migros.diffusion.generate import generate_images
from migros.diffusion.model_ids import SD15_FORMER_ID, SD15_ID
from migros.diffusion.sd15_architecture import write_to_hub_cache

PROMPTS = [
    "Brain MRI Flair, with large tumour on the center left",
    "Brain MRI Flair, healthy",
    "Prostate MRI t2 healthy",
    "Prostate MRI t2, with small tumour",
    "MRI T1 sagittal brain slice",
]
# A few steps of a tiny model: checks the plumbing, not the quality of the default pretraining.
TINY = dict(
    image_size=64,
    corpus_size=24,
    vae_steps=2,
    vae_batch_size=2,
    unet_steps=3,
    unet_batch_size=4,
    warmup_steps=1,
    architecture=dict(vae_channels=(8, 8, 8, 8), unet_channels=(8, 16), text_hidden_size=32, text_layers=1),
    show_progress=False,
)


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return pretrain_demo_model(tmp_path_factory.mktemp("demo") / "pipeline", seed=3, **TINY)


def test_tokenizer_matches_clip(tokenizer):
    reference = SimpleTokenizer()
    assert isinstance(tokenizer, CLIPTokenizer)
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    for prompt in PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert ids[0] == tokenizer.bos_token_id == 49406 and ids[-1] == tokenizer.eos_token_id == 49407
        assert ids[1:-1] == reference.encode(prompt), prompt
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # SD's known ids


def test_tokenizer_pads_and_truncates_to_77(tokenizer):
    short, long = tokenizer(
        ["Prostate MRI t2 healthy", "tumour " * 200], padding="max_length", max_length=77, truncation=True
    ).input_ids
    assert len(short) == len(long) == 77
    assert short[-1] == 49407  # SD pads with <|endoftext|>
    assert long[-1] == 49407 and long[0] == 49406


def test_demo_model_loads_as_stable_diffusion(tiny_model):
    pipeline = load_pipeline(tiny_model)
    assert isinstance(pipeline, StableDiffusionPipeline)
    assert isinstance(pipeline.vae, AutoencoderKL) and isinstance(pipeline.unet, UNet2DConditionModel)
    assert isinstance(pipeline.text_encoder, CLIPTextModel) and isinstance(pipeline.tokenizer, CLIPTokenizer)
    assert pipeline.safety_checker is None
    assert pipeline.vae.config.latent_channels == 4 and pipeline.vae.config.scaling_factor != 1.0
    assert pipeline.unet.config.cross_attention_dim == pipeline.text_encoder.config.hidden_size
    assert pipeline.scheduler.config.beta_schedule == "scaled_linear"
    assert pipeline.scheduler.config.num_train_timesteps == 1000
    with torch.no_grad():
        latents = pipeline.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert latents.shape == (1, 4, 8, 8)


def test_demo_model_generates_deterministically(tiny_model):
    pipeline = load_pipeline(tiny_model)
    pipeline.set_progress_bar_config(disable=True)

    def generate(seed):
        return pipeline(
            "MRI T2 coronal brain slice", height=64, width=64, num_inference_steps=3, guidance_scale=5.0,
            generator=torch.Generator().manual_seed(seed), output_type="np",
        ).images

    first, again, other = generate(0), generate(0), generate(1)
    assert first.shape == (1, 64, 64, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_pretraining_is_deterministic(tiny_model, tmp_path):
    again = pretrain_demo_model(tmp_path / "again", seed=3, **TINY)
    for name in ("unet", "vae", "text_encoder"):
        first_state = getattr(load_pipeline(tiny_model), name).state_dict()
        second_state = getattr(load_pipeline(again), name).state_dict()
        assert all(torch.equal(first_state[key], second_state[key]) for key in first_state), name


def test_a_4x_demo_model_has_16x16_latents_and_generates_full_size_images(tmp_path):
    tiny_4x = {**TINY, "architecture": {**TINY["architecture"], "vae_channels": (8, 8, 8)}}
    folder = pretrain_demo_model(tmp_path / "pipeline", seed=3, latent_downsampling=4, **tiny_4x)
    assert json.loads((folder / PRETRAINING_LOG).read_text())["latent_downsampling"] == 4
    pipeline = load_pipeline(folder)
    assert pipeline.vae_scale_factor == 4 and pipeline.unet.config.sample_size == 16
    with torch.no_grad():
        assert pipeline.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean.shape == (1, 4, 16, 16)
    prompts = pd.DataFrame({"index": [0, 1], "prompt": ["MRI T2 coronal brain slice"] * 2, "label": 0, "seed": [5, 6]})
    manifest = generate_images(pipeline, prompts, tmp_path / "images", 64, steps=2, guidance_scale=3.0, batch_size=2)
    for file in manifest.file:  # latents drawn at 64 // 8 would decode to 32 px here
        assert Image.open(file).size == (64, 64)


@pytest.mark.parametrize("latent_downsampling, vae_channels", [(4, (8, 8, 8, 8)), (8, (8, 8, 8)), (2, None)])
def test_vae_blocks_must_match_the_latent_downsampling(latent_downsampling, vae_channels):
    with pytest.raises(ValueError, match="latent_downsampling|VAE needs"):
        build_demo_pipeline(image_size=16, latent_downsampling=latent_downsampling, vae_channels=vae_channels)


def test_missing_folder_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match="does not exist") as error:
        load_pipeline(tmp_path / "no_such_model")
    assert "save_pretrained" in str(error.value) and "huggingface-cli download" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match="no model_index.json"):
        load_pipeline(tmp_path / "empty")


@pytest.mark.parametrize("model_id", [SD15_ID, SD15_FORMER_ID])
def test_uncached_sd15_raises_clear_error_naming_the_id_that_can_be_downloaded(tmp_path, monkeypatch, model_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError) as error:
        load_pipeline(model_id, cache_dir=str(tmp_path / "empty_cache"))
    message = str(error.value)
    assert "not in the Hugging Face cache" in message and SD15_FORMER_ID in message and SD15_ID in message
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert f"download {SD15_FORMER_ID}" not in message  # removed from the Hub: the download would fail
    assert "HF_HOME" in message and "save_pretrained" in message


@pytest.mark.parametrize("cached_id, configured_id", [(SD15_FORMER_ID, SD15_ID), (SD15_ID, SD15_FORMER_ID)])
def test_cache_holding_either_sd15_id_serves_the_other(tmp_path, monkeypatch, cached_id, configured_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = build_demo_pipeline(image_size=16, vae_channels=(8, 8, 8, 8), unet_channels=(16, 16), norm_groups=4)
    write_to_hub_cache(pipeline, tmp_path / "hub", cached_id, dtype=torch.float32)
    loaded = load_pipeline(configured_id, cache_dir=str(tmp_path / "hub"))
    for name in ("unet", "vae", "text_encoder"):
        expected, actual = getattr(pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(expected[key], actual[key]) for key in expected), name
    prompt = "Prostate MRI t2, with large tumour"
    assert loaded.tokenizer(prompt).input_ids == clip_tokenizer()(prompt).input_ids
    assert loaded.tokenizer.model_max_length == 77


def test_corpus_is_deterministic_and_has_no_axial_slices():
    first = build_demo_corpus(12, image_size=32, seed=5, show_progress=False)
    again = build_demo_corpus(12, image_size=32, seed=5, show_progress=False)
    other = build_demo_corpus(12, image_size=32, seed=6, show_progress=False)
    assert np.array_equal(first.images, again.images) and first.captions == again.captions
    assert not np.array_equal(first.images, other.images)
    assert first.images.shape == (12, 32, 32) and first.images.dtype == np.float32
    assert first.images.min() >= -1.0 and first.images.max() <= 1.0
    assert set(first.orientations) <= set(ORIENTATIONS) and "axial" not in first.orientations
    assert all(orientation in text for orientation, text in zip(first.orientations, first.captions))
    assert not any(word in text.lower() for text in first.captions for word in ("axial", "flair", "tumour", "prostate"))
