"""The trained model's answer to one fixed input, kept with the exported adapter to check every reload of it.

When fine-tuning ends, a fixed noisy latent, timestep and training prompt go through the text encoder and the UNet
with the adapter as trained; the output (and the base model's, before training) is saved beside the LoRA weights.
Wherever the exported adapter is loaded into a stock pipeline with `load_lora_weights` (generation, tests), the
same input must give the same output: a layer that the export or the loader dropped (as the legacy key format
did for layers with their own ranks) stops the run instead of silently sampling a partly adapted model.
"""

import logging
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

log = logging.getLogger(__name__)

PROBE_FILE = "training_output.pt"
PROBE_TIMESTEP = 500
# The reloaded output may differ from the trained one by this share of the adaptation's own effect (|trained -
# base|): float rounding of the export is orders of magnitude below it, one lost layer of a trained adapter above.
TOLERANCE = 0.01


class AdapterReloadError(RuntimeError):
    """An exported adapter, loaded again, does not reproduce the model it was trained as."""


@torch.no_grad()
def probe_output(pipeline: StableDiffusionPipeline, prompt: str, image_size: int, seed: int = 0) -> torch.Tensor:
    """UNet noise prediction for a latent drawn from `seed`, at PROBE_TIMESTEP, conditioned on `prompt` (fp32, CPU)."""
    unet = pipeline.unet
    latent_size = image_size // pipeline.vae_scale_factor
    latents = torch.randn((1, unet.config.in_channels, latent_size, latent_size), generator=torch.Generator().manual_seed(seed))
    tokens = pipeline.tokenizer(
        [prompt], padding="max_length", max_length=pipeline.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    hidden = pipeline.text_encoder(tokens.to(unet.device))[0]
    timestep = torch.tensor([PROBE_TIMESTEP], device=unet.device)
    return unet(latents.to(unet.device, unet.dtype), timestep, encoder_hidden_states=hidden).sample.float().cpu()


def save_probe(path: Path, prompt: str, image_size: int, base_output: torch.Tensor, trained_output: torch.Tensor) -> None:
    torch.save({"prompt": prompt, "image_size": image_size, "base": base_output, "trained": trained_output}, path)


def reload_error(pipeline: StableDiffusionPipeline, probe_path: Path) -> float:
    """|reloaded - trained| / |trained - base| on the probe input, for a pipeline with the adapter loaded."""
    probe = torch.load(probe_path, map_location="cpu", weights_only=True)
    output = probe_output(pipeline, probe["prompt"], probe["image_size"])
    effect = (probe["trained"] - probe["base"]).norm()
    return float((output - probe["trained"]).norm() / effect.clamp_min(1e-12))


def check_reload(pipeline: StableDiffusionPipeline, adapter_dir: Path) -> None:
    """Stop if the adapter just loaded from `adapter_dir` does not reproduce its training-time output.

    Only a fp32 pipeline is checked: in fp16 the rounding alone can reach the effect of a short fine-tune.
    """
    if pipeline.unet.dtype != torch.float32:
        log.info("adapter reload check skipped: the pipeline runs in %s (the check needs fp32)", pipeline.unet.dtype)
        return
    error = reload_error(pipeline, adapter_dir / PROBE_FILE)
    if error > TOLERANCE:
        raise AdapterReloadError(
            f"{adapter_dir}: the adapter loaded with load_lora_weights does not reproduce its training-time output "
            f"(difference {error:.3g} of the adaptation's effect, tolerance {TOLERANCE}); layers were lost in the "
            "export or the loading"
        )
    log.info("adapter reload check passed: difference %.2g of the adaptation's effect", error)
