"""Images and a tiny denoiser for membership-inference tests with a planted answer (test_membership.py,
test_privacy_defence.py)."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIZE = 32
PROMPTS = ("Brain MRI, healthy", "Brain MRI, tumour")


def smooth_images(folder, count, seed):
    """Low-frequency random images (4×4 upsampled): content the small VAE keeps apart."""
    generator = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{seed}_{index}.png"
        Image.fromarray(generator.integers(0, 255, (4, 4), dtype=np.uint8)).resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC).save(path)
        paths.append(str(path))
    return paths


def tiny_pipeline(images):
    """The demo architecture at 32 px with random weights, its VAE's scaling factor giving `images` (paths)
    latents of unit spread: the untrained VAE's latents barely vary, which pretraining's factor corrects. Its
    posterior std is made negligible: a fine-tune samples latents from the posterior, whose random-VAE std is
    as large as the spread of the means and would bury the images in noise."""
    from migros.diffusion.demo.architecture import build_demo_pipeline
    from migros.diffusion.finetune import encode_latent_distribution, load_images

    pipeline = build_demo_pipeline(image_size=SIZE, vae_channels=(8, 8, 16, 16), unet_channels=(16, 32),
                                   text_hidden_size=32, norm_groups=4, seed=0)
    with torch.no_grad():
        latent_channels = pipeline.vae.config.latent_channels
        pipeline.vae.quant_conv.bias[latent_channels:] = -20.0  # log-variance: std e^-10
    means, _ = encode_latent_distribution(pipeline, load_images(images, SIZE))
    pipeline.vae.register_to_config(scaling_factor=float(1 / means.std()))
    return pipeline


def train_unet(pipeline, images, steps, seed=0, batch_size=8):
    """All UNet weights trained on `images` (paths, prompts alternating healthy / tumour) with Adam at 2e-3, each
    step on all of them or, when there are more than `batch_size`, on a draw of that many."""
    from diffusers import DDPMScheduler

    from migros.diffusion.finetune import encode_latent_distribution, encode_prompts, load_images

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    latents = encode_latent_distribution(pipeline, load_images(images, SIZE))[0] * pipeline.vae.config.scaling_factor
    hidden = pipeline.text_encoder(encode_prompts(pipeline, [PROMPTS[i % 2] for i in range(len(images))]))[0].detach()
    optimizer = torch.optim.Adam(pipeline.unet.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    pipeline.unet.train()
    for _ in range(steps):
        index = torch.arange(len(latents)) if len(latents) <= batch_size else \
            torch.randint(0, len(latents), (batch_size,), generator=generator)
        noise = torch.randn(latents[index].shape, generator=generator)
        timesteps = torch.randint(0, 1000, (len(index),), generator=generator)
        noisy = scheduler.add_noise(latents[index], noise, timesteps)
        loss = F.mse_loss(pipeline.unet(noisy, timesteps, hidden[index]).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipeline.unet.eval()
