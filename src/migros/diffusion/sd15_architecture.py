"""Stable Diffusion v1.5's exact architecture with random weights, and a Hugging Face cache that holds it.

No SD weights ship in any package and nothing can be downloaded at run time, so the paper's path (SD v1.5 from
the Hugging Face cache, 224 px, all linear layers of UNet and text encoder adapted) is exercised offline on a
model with SD v1.5's modules, shapes, layer names, tokenizer and noise schedule. The component settings are those
of the published `stable-diffusion-v1-5/stable-diffusion-v1-5` configs (unet/, vae/, text_encoder/ and
scheduler/ config.json). Uses: the paper-configuration test, the resource benchmark at SD v1.5 geometry, and a
cluster dry run before the real weights are placed. Its images are noise. The demo model
(`demo.architecture`) takes SD v1.5's noise schedule from here.
"""

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

from migros.diffusion.clip_tokenizer import CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, clip_tokenizer, write_clip_vocabulary

UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
)
# CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14), as in SD v1.5's text_encoder/config.json.
TEXT_ENCODER = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=CLIP_MAX_LENGTH,
    hidden_act="quick_gelu",
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
# Components that the published model_index.json lists besides those the pipeline is built from.
PUBLISHED_INDEX_ENTRIES = {
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
}
# The paper's scheduler: PNDM, SD v1.5's default sampler, with SD v1.5's noise schedule, as in its
# scheduler/scheduler_config.json. Training reads the same config into a DDPMScheduler; from_config keeps keys a
# class does not take (clip_sample, skip_prk_steps).
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "skip_prk_steps": True,
}


def build_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """SD v1.5's pipeline with random weights that depend only on `seed` (the global torch RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER))
    return assemble_pipeline(vae, text_encoder, unet)


def assemble_pipeline(
    vae: AutoencoderKL, text_encoder: CLIPTextModel, unet: UNet2DConditionModel
) -> StableDiffusionPipeline:
    """A Stable Diffusion pipeline of these models with SD's tokenizer and noise schedule and no safety checker
    (see base_model.load_pipeline: an NSFW filter for natural images has no place on MRI)."""
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler.from_config(SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_to_hub_cache(
    pipeline: StableDiffusionPipeline, hub_cache: Path, model_id: str, revision: str = "0" * 40,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Save `pipeline` where `from_pretrained(model_id, local_files_only=True)` finds it in `hub_cache`.

    The layout is the Hugging Face cache's: `models--<owner>--<name>/snapshots/<revision>/` with the pipeline
    folders and `refs/main` naming the revision. As in the published SD v1.5 repository, model_index.json lists a
    feature extractor (its config is written) and a safety checker, whose weights are left out as the download command in
    docs/usage.md leaves them out; the tokenizer folder holds vocab.json and merges.txt as there. Weights are stored in `dtype` (fp16 halves the 2 GB written; loading
    casts them to the dtype asked for). Returns the snapshot folder.
    """
    owner, name = model_id.split("/")
    repository = Path(hub_cache) / f"models--{owner}--{name}"
    snapshot = repository / "snapshots" / revision
    pipeline.to(dtype=dtype).save_pretrained(snapshot)
    CLIPImageProcessor(crop_size=224, size=224).save_pretrained(snapshot / "feature_extractor")
    # The published tokenizer folder holds vocab.json and merges.txt, not the tokenizer.json transformers 5 writes.
    (snapshot / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    write_clip_vocabulary(snapshot / "tokenizer")
    index_path = snapshot / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(PUBLISHED_INDEX_ENTRIES)
    for key in ("image_encoder", "requires_safety_checker"):  # written by today's diffusers, absent in the published file
        index.pop(key, None)
    index_path.write_text(json.dumps(index, indent=2))
    (repository / "refs").mkdir(parents=True, exist_ok=True)
    (repository / "refs" / "main").write_text(revision)
    return snapshot
