"""Pretraining of the demo model on the demo corpus: the VAE first, then UNet and text encoder together."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from tqdm import tqdm

from migros.devices import default_device
from migros.diffusion.clip_tokenizer import CLIP_MAX_LENGTH
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.demo.corpus import DemoCorpus, build_demo_corpus

LOGGER = logging.getLogger(__name__)

PRETRAINING_LOG = "demo_pretraining.json"


def pretrain_demo_model(
    output_dir: str | Path,
    *,
    image_size: int,
    seed: int,
    corpus_size: int,
    vae_steps: int,
    unet_steps: int,
    latent_downsampling: int = 8,
    vae_batch_size: int = 32,
    vae_lr: float = 2e-3,
    vae_crop_size: int = 32,
    kl_weight: float = 1e-4,
    unet_batch_size: int = 32,
    unet_lr: float = 5e-3,
    text_encoder_lr: float = 1e-3,
    caption_dropout: float = 0.1,
    warmup_steps: int = 50,
    architecture: dict | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> Path:
    """Pretrain the demo pipeline on the generic corpus and save it with `save_pretrained(output_dir)`.

    Stage 1 trains the VAE on random crops of min(`vae_crop_size`, `image_size`) pixels (L1 reconstruction +
    `kl_weight` x KL per latent element), stage 2 sets SD's latent scaling_factor to 1 / std of the corpus
    latents, stage 3 trains UNet and text encoder together on the noise-prediction MSE with `caption_dropout`
    empty captions, so that classifier-free guidance works. `architecture` holds keyword arguments of
    `build_demo_pipeline` besides `latent_downsampling`. A summary (losses, times, sizes) goes to demo_pretraining.json.

    The defaults here and the schema's of base_model.demo fit a 5-minute CPU budget at 64 px. They were tuned on held-out noise-prediction loss: the UNet
    gains most from a high learning rate, while the text encoder needs a lower one (at the UNet's rate it stopped
    telling "T1" from "T2" captions apart).
    """
    if vae_crop_size < 8:
        raise ValueError(f"vae_crop_size must be at least 8 (one latent pixel), got {vae_crop_size}")
    device = torch.device(device) if device else default_device()
    clock = _StageClock()
    corpus = build_demo_corpus(corpus_size, image_size, seed, show_progress)
    pipeline = build_demo_pipeline(
        image_size=image_size, latent_downsampling=latent_downsampling, seed=seed, **(architecture or {})
    ).to(device)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(corpus.images).unsqueeze(1)
    clock.lap("corpus and model")
    vae_loss = train_vae(
        pipeline.vae,
        pixels,
        vae_steps,
        vae_batch_size,
        vae_lr,
        min(vae_crop_size, image_size),
        kl_weight,
        warmup_steps,
        generator,
        device,
        show_progress,
    )
    clock.lap("vae")
    latent_mean, latent_std, scaling_factor = _encode_corpus(pipeline.vae, pixels, generator, device)
    pipeline.vae.register_to_config(scaling_factor=scaling_factor)
    clock.lap("encode corpus")
    unet_loss = _train_denoiser(
        pipeline,
        corpus,
        latent_mean,
        latent_std,
        unet_steps,
        unet_batch_size,
        (unet_lr, text_encoder_lr),
        caption_dropout,
        warmup_steps,
        generator,
        device,
        show_progress,
    )
    clock.lap("unet and text encoder")
    output_dir = Path(output_dir)
    pipeline.save_pretrained(output_dir)
    clock.lap("save")
    summary = {
        "seed": seed,
        "image_size": image_size,
        "corpus_size": corpus_size,
        "captions": sorted(set(corpus.captions)),
        "vae_steps": vae_steps,
        "unet_steps": unet_steps,
        "latent_downsampling": latent_downsampling,
        "final_vae_loss": vae_loss,
        "final_unet_loss": unet_loss,
        "scaling_factor": scaling_factor,
        "parameters": {name: _parameter_count(getattr(pipeline, name)) for name in ("vae", "unet", "text_encoder")},
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seconds": clock.total(),
        "stage_seconds": clock.laps,
    }
    (output_dir / PRETRAINING_LOG).write_text(json.dumps(summary, indent=2))
    LOGGER.info("demo model pretrained in %.1f s: %s", summary["seconds"], summary)
    return output_dir


class _StageClock:
    """Wall time per pretraining stage, for the summary (the demo has a time budget)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self.last, 1)
        self.last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 1)


def _rgb(gray: torch.Tensor) -> torch.Tensor:
    """SD's input: the grayscale slice replicated to 3 channels (values already in [-1, 1])."""
    return gray.expand(-1, 3, -1, -1)


def train_vae(
    vae: AutoencoderKL,
    pixels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    crop_size: int,
    kl_weight: float,
    warmup_steps: int,
    generator: torch.Generator,
    device: torch.device,
    show_progress: bool,
) -> float:
    """Fit the autoencoder on random crops; returns the mean loss of the last steps.

    The autoencoder is convolutional, so crops teach it the same local reconstruction as whole images, at a
    fraction of the cost per step (SD's VAE was likewise trained on crops smaller than the images it encodes).
    """
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    schedule = _warmup_cosine(optimizer, steps, warmup_steps)
    losses = []
    for _ in (bar := tqdm(range(steps), desc="demo VAE", disable=not show_progress)):
        batch = _rgb(_random_crops(pixels, batch_size, crop_size, generator)).to(device)
        posterior = vae.encode(batch).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(device)
        reconstruction = vae.decode(posterior.mean + posterior.std * noise).sample
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = F.l1_loss(reconstruction, batch) + kl_weight * kl
        _step(loss, optimizer, schedule, vae.parameters())
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    vae.eval()
    return float(np.mean(losses[-20:])) if losses else float("nan")


def _random_crops(pixels: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random square crops of side `size` from random corpus images."""
    images = torch.randint(len(pixels), (count,), generator=generator).tolist()
    corners = torch.randint(pixels.shape[-1] - size + 1, (count, 2), generator=generator).tolist()
    crops = [pixels[image, :, row : row + size, col : col + size] for image, (row, col) in zip(images, corners)]
    return torch.stack(crops)


@torch.no_grad()
def _encode_corpus(
    vae: AutoencoderKL, pixels: torch.Tensor, generator: torch.Generator, device: torch.device, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior mean and std of every corpus image, and SD's scaling_factor: 1 / std of sampled latents."""
    means, stds = [], []
    for start in range(0, len(pixels), batch_size):
        posterior = vae.encode(_rgb(pixels[start : start + batch_size]).to(device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
    mean, std = torch.cat(means), torch.cat(stds)
    samples = mean + std * torch.randn(mean.shape, generator=generator)
    return mean, std, float(1.0 / samples.std())


def _train_denoiser(
    pipeline: StableDiffusionPipeline,
    corpus: DemoCorpus,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    steps: int,
    batch_size: int,
    learning_rates: tuple[float, float],
    caption_dropout: float,
    warmup_steps: int,
    generator: torch.Generator,
    device: torch.device,
    show_progress: bool,
) -> float:
    """Train UNet and text encoder jointly on SD's epsilon-prediction objective; returns the mean of the last losses.

    The VAE is frozen, so each image's posterior was computed once and a fresh latent is drawn from it per step,
    as SD's training does with `latent_dist.sample()`. The corpus has only a handful of distinct captions: each
    step encodes those once and gathers them per image (same gradients as encoding every row, a fraction of the
    cost).
    """
    unet, text_encoder = pipeline.unet, pipeline.text_encoder
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)  # as SD training scripts do
    captions = sorted(set(corpus.captions))
    token_ids = pipeline.tokenizer(
        captions + [""], padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids
    caption_index = torch.tensor([captions.index(text) for text in corpus.captions])
    empty = len(captions)
    scale = pipeline.vae.config.scaling_factor
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    unet_lr, text_encoder_lr = learning_rates
    optimizer = torch.optim.AdamW(
        [{"params": unet.parameters(), "lr": unet_lr}, {"params": text_encoder.parameters(), "lr": text_encoder_lr}]
    )
    schedule = _warmup_cosine(optimizer, steps, warmup_steps)
    unet.train()
    text_encoder.train()
    losses = []
    for _ in (bar := tqdm(range(steps), desc="demo UNet + text encoder", disable=not show_progress)):
        index = torch.randint(len(latent_mean), (batch_size,), generator=generator)
        mean, std = latent_mean[index], latent_std[index]
        latents = (mean + std * torch.randn(mean.shape, generator=generator)) * scale
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        dropped = torch.rand(batch_size, generator=generator) < caption_dropout
        rows = torch.where(dropped, empty, caption_index[index])
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        encoder_states = text_encoder(token_ids.to(device))[0][rows.to(device)]
        prediction = unet(noisy.to(device), timesteps.to(device), encoder_states).sample
        loss = F.mse_loss(prediction, noise.to(device))
        _step(loss, optimizer, schedule, parameters)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    unet.eval()
    text_encoder.eval()
    return float(np.mean(losses[-50:])) if losses else float("nan")


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule, parameters) -> None:
    """One optimizer step with gradient clipping (short, high-lr runs are spiky)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(parameters), 1.0)
    optimizer.step()
    schedule.step()


def _warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 0: the most out of a fixed, small number of steps.

    Not diffusers' get_cosine_schedule_with_warmup: its warm-up starts at 0 (step / warmup), so its first step
    does not train; here the warm-up is (step + 1) / warmup. The cosine part is the same.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
