"""Generate the synthetic set: batched, each image from its own seed, so any subset regenerates identically."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler, StableDiffusionPipeline
from tqdm import tqdm

from migros.devices import default_device, inference_dtype
from migros.diffusion.probe import check_reload
from migros.settings import StageSettings

SCHEDULERS = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "dpm_solver": DPMSolverMultistepScheduler}


@dataclass(frozen=True)
class GenerationSettings(StageSettings):
    """The sampler's keys of the `generation` section (its `images` and `seed` draw the prompts)."""

    SECTION = "generation (sampler)"
    steps: int
    guidance_scale: float
    scheduler: str  # a key of SCHEDULERS
    batch_size: int


def use_scheduler(pipeline: StableDiffusionPipeline, name: str) -> None:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {sorted(SCHEDULERS)}")
    pipeline.scheduler = SCHEDULERS[name].from_config(pipeline.scheduler.config)


def generate_images(
    pipeline: StableDiffusionPipeline,
    prompts: pd.DataFrame,
    out_dir: Path,
    image_size: int,
    steps: int,
    guidance_scale: float,
    batch_size: int,
) -> pd.DataFrame:
    """Write `out_dir/<index>.png` for every row of `prompts` (index, prompt, label, seed); returns the manifest.

    Per-image generators on the CPU make image i depend on its seed alone, not on its batch or the device.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline.set_progress_bar_config(disable=True)
    rows = []
    latent_size = image_size // pipeline.vae_scale_factor  # 8 for SD, 8 or 4 for the demo model
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch"):
        batch = prompts.iloc[start : start + batch_size]
        generators = [torch.Generator().manual_seed(int(seed)) for seed in batch.seed]
        latents = torch.stack([
            torch.randn((pipeline.unet.config.in_channels, latent_size, latent_size), generator=generator)
            for generator in generators
        ]).to(pipeline.device, pipeline.unet.dtype)
        with torch.no_grad():
            images = pipeline(
                batch.prompt.tolist(), height=image_size, width=image_size, num_inference_steps=steps,
                guidance_scale=guidance_scale, latents=latents, generator=generators,
            ).images
        for row, image in zip(batch.itertuples(), images):
            path = out_dir / f"{row.index:05d}.png"
            image.save(path)
            rows.append({"file": str(path), "prompt": row.prompt, "label": row.label, "seed": row.seed})
    return pd.DataFrame(rows, columns=["file", "prompt", "label", "seed"])


def run_generate_stage(
    base_model_dir: Path,
    adapter_dir: Path | None,
    prompts_csv: Path,
    settings: GenerationSettings,
    image_size: int,
    images_dir: Path,
    manifest_csv: Path,
) -> None:
    """Everything the `generate` rule does; without an adapter it samples the base model alone."""
    from migros.diffusion.base_model import load_prepared_base_model

    device = default_device()
    pipeline = load_prepared_base_model(base_model_dir, device=device, dtype=inference_dtype(device))
    if adapter_dir is not None:
        pipeline.load_lora_weights(adapter_dir)
        check_reload(pipeline, adapter_dir)
        # Merged into the base weights the adapter costs nothing per step (measured on the demo: 20 % less time
        # per image; pixels differ from the unmerged forward by at most one grey level, from rounding).
        pipeline.fuse_lora()
        pipeline.unload_lora_weights()
    use_scheduler(pipeline, settings.scheduler)
    manifest = generate_images(
        pipeline, pd.read_csv(prompts_csv), images_dir, image_size,
        settings.steps, settings.guidance_scale, settings.batch_size,
    )
    manifest.to_csv(manifest_csv, index=False)
