"""The demo model's architecture: a randomly initialised small pipeline with SD v1.5's classes and geometry."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from migros.diffusion.clip_tokenizer import CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE
from migros.diffusion.sd15_architecture import assemble_pipeline

# The VAE's block widths per latent downsampling factor: SD's 8x (four blocks, three halvings: 8x8 latents at 64 px)
# and 4x (the same blocks without the first halving: 16x16 latents, the LDM paper's LDM-4 geometry), which keeps
# lesions of a few pixels that the 8x one blurs away at the demo's size (docs/benchmarks.md, "The demo model's VAE").
DEMO_VAE_CHANNELS = {8: (16, 16, 32, 64), 4: (16, 32, 64)}


def build_demo_pipeline(
    image_size: int = 64,
    latent_downsampling: int = 8,
    vae_channels: tuple[int, ...] | None = None,
    unet_channels: tuple[int, ...] = (64, 64, 64),
    unet_attention_head_dim: int = 4,  # diffusers' name for the number of heads; 4 trains 20 % faster than SD's 8
    text_hidden_size: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    norm_groups: int = 8,
    seed: int = 0,
) -> StableDiffusionPipeline:
    """A randomly initialised small pipeline with SD v1.5's classes and noise schedule.

    The VAE downsamples by `latent_downsampling` (8: SD's geometry, four blocks; 4: three blocks) to 4 latent
    channels, with `vae_channels` (one width per block; default `DEMO_VAE_CHANNELS`); the UNet's first blocks
    cross-attend to the CLIP text encoder's last hidden state, as in SD. The VAE's scaling_factor is set by
    pretraining. Weights depend only on `seed`; the global torch RNG is left untouched.
    """
    if latent_downsampling not in DEMO_VAE_CHANNELS:
        raise ValueError(f"latent_downsampling must be one of {sorted(DEMO_VAE_CHANNELS)}, got {latent_downsampling}")
    vae_channels = DEMO_VAE_CHANNELS[latent_downsampling] if vae_channels is None else tuple(vae_channels)
    blocks_needed = len(DEMO_VAE_CHANNELS[latent_downsampling])
    if len(vae_channels) != blocks_needed:
        raise ValueError(f"a {latent_downsampling}x VAE needs {blocks_needed} blocks, got vae_channels={vae_channels}")
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * blocks_needed,
            up_block_types=("UpDecoderBlock2D",) * blocks_needed,
            block_out_channels=vae_channels,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=norm_groups,
            sample_size=image_size,
        )
        blocks = len(unet_channels)
        unet = UNet2DConditionModel(
            sample_size=image_size // latent_downsampling,
            in_channels=4,
            out_channels=4,
            block_out_channels=tuple(unet_channels),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1),
            cross_attention_dim=text_hidden_size,
            attention_head_dim=unet_attention_head_dim,
            norm_num_groups=norm_groups,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=CLIP_VOCAB_SIZE,
                hidden_size=text_hidden_size,
                intermediate_size=4 * text_hidden_size,
                num_hidden_layers=text_layers,
                num_attention_heads=text_heads,
                max_position_embeddings=CLIP_MAX_LENGTH,
                hidden_act="quick_gelu",
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=1,
            )
        )
    return assemble_pipeline(vae, text_encoder, unet)
