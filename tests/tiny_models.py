"""Small models and data shared by the low-rank tuner tests: a tiny SD-architecture UNet, text encoder and VAE,
and two regression tasks."""

import copy

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import inject_adapter_in_model, set_peft_model_state_dict
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from migros.tuners.lowrank import linear_module_names


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_text_encoder() -> CLIPTextModel:
    torch.manual_seed(1)
    config = CLIPTextConfig(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(2)
    return AutoencoderKL(
        block_out_channels=(8,),
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    )


def prefixed_linear_names(models: dict[str, nn.Module]) -> list[str]:
    """Target names for several models adapted together: "<key>.<module>"."""
    return [f"{key}.{name}" for key, model in models.items() for name in linear_module_names(model)]


def regression_models() -> dict[str, nn.Module]:
    """A single Linear and an MLP, to be fitted to a random rank-4 linear map from their (frozen) start."""
    torch.manual_seed(3)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 16))
    return {"single": nn.Sequential(nn.Linear(16, 16)), "mlp": mlp}


def regression_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    target_map = torch.randn(16, 4, generator=torch.Generator().manual_seed(100)) @ torch.randn(
        4, 16, generator=torch.Generator().manual_seed(101)
    )
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(step))
    return x, x @ target_map


def regression_loss(models: dict[str, nn.Module], step: int) -> torch.Tensor:
    x, y = regression_batch(step)
    return sum(F.mse_loss(model(x), y) for model in models.values())


def diffusion_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, 99, (2, 8), generator=generator)
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (2,), generator=generator)
    noise = torch.randn(2, 4, 8, 8, generator=generator)
    return ids, latents, timesteps, noise


def diffusion_outputs(unet: nn.Module, text_encoder: nn.Module, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids, latents, timesteps, _ = diffusion_batch(step)
    hidden = text_encoder(ids)[0]
    return hidden, unet(latents, timesteps, hidden).sample


def diffusion_loss(models: dict[str, nn.Module], step: int) -> torch.Tensor:
    _, prediction = diffusion_outputs(models["unet"], models["text_encoder"], step)
    return F.mse_loss(prediction, diffusion_batch(step)[3])


def assert_peft_export_reproduces_outputs(tuner, models: dict[str, nn.Module], originals: dict[str, nn.Module]) -> None:
    """`tuner.to_peft(key)` of each adapted model, loaded by peft into a copy of the untrained model, gives the
    adapted model's outputs (and the adapter changes them)."""
    loaded = copy.deepcopy(originals)
    for key, model in loaded.items():
        config, state = tuner.to_peft(key)
        inject_adapter_in_model(config, model)
        result = set_peft_model_state_dict(model, state)
        assert not [k for k in result.missing_keys if "lora_" in k] and not result.unexpected_keys
    with torch.no_grad():
        expected = diffusion_outputs(models["unet"], models["text_encoder"], 50)
        actual = diffusion_outputs(loaded["unet"], loaded["text_encoder"], 50)
        untrained = diffusion_outputs(originals["unet"], originals["text_encoder"], 50)
    for exp, act, base in zip(expected, actual, untrained):
        torch.testing.assert_close(act, exp, rtol=0, atol=1e-5)
        assert (exp - base).abs().max() > 1e-3  # the adapter does something
