"""Fine-tune a Stable Diffusion pipeline with an adapter: one readable loop, as in diffusers' LoRA example.

Noise-prediction MSE on VAE latents of the training slices (VAE frozen, its latent distributions cached once),
Adam on the adapter parameters only. Every random draw of step k (batch order, noise, timesteps, latent sample)
comes from generators seeded by (seed, k), so a run resumed from a checkpoint draws exactly what an
uninterrupted run draws. Checkpoints hold the adapter, the optimizer state, the step, the loss log and the RNG
states, and are only resumed when they were made with the same settings. A method with a `privacy` defence trains
a proxy attack model beside the adapter and divides the loss by its cross-entropy (`privacy_defence`).
"""

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE
from PIL import Image
from safetensors import safe_open
from tqdm import tqdm

from migros.adapters import Adapter
from migros.adapters.base import GatedAdapter
from migros.devices import autocast_dtype, default_device
from migros.diffusion.privacy_defence import DefenceSettings, LatentSet, StablePrivateLoRA
from migros.diffusion.probe import PROBE_FILE, probe_output, save_probe
from migros.images import open_image
from migros.settings import StageSettings

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
# loss.csv columns of a defended run: the proxy's cross-entropy on the step's batch as members, and its own loss
DEFENCE_LOG_COLUMNS = ("proxy_member_loss", "proxy_loss")


@dataclass(frozen=True)
class TrainingSettings(StageSettings):
    """The `finetune` section: training shared by every method (a method may override `epochs`)."""

    SECTION = "finetune"
    epochs: int
    batch_size: int
    learning_rate: float
    adam_betas: tuple[float, float]
    seed: int
    checkpoint_every: int  # optimizer steps
    mixed_precision: str  # migros.devices.MIXED_PRECISION


def scaled_optimizer_step(grad_scaler: torch.amp.GradScaler, *optimizers: torch.optim.Optimizer) -> bool:
    """One step of each optimizer through the gradient scaler; False when the scaler skipped any (inf/NaN gradients
    in fp16: it skips each optimizer whose own gradients overflowed), which it signals by lowering its scale. A
    disabled scaler never skips."""
    scale = grad_scaler.get_scale() if grad_scaler.is_enabled() else None
    for optimizer in optimizers:
        grad_scaler.step(optimizer)
    grad_scaler.update()
    return scale is None or grad_scaler.get_scale() >= scale


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """Grayscale PNG slices → (N, 3, size, size) in [-1, 1], the input range of SD's VAE."""
    images = []
    for path in paths:
        image = open_image(path, "RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        images.append(torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1.0).permute(2, 0, 1))
    return torch.stack(images)


@torch.no_grad()
def encode_latent_distribution(pipeline: StableDiffusionPipeline, images: torch.Tensor, batch_size: int = 16):
    """Mean and std of the VAE posterior of each training image, computed once (the VAE is frozen)."""
    means, stds = [], []
    for batch in images.split(batch_size):
        posterior = pipeline.vae.encode(batch.to(pipeline.vae.device, pipeline.vae.dtype)).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_prompts(pipeline: StableDiffusionPipeline, prompts: list[str]) -> torch.Tensor:
    tokens = pipeline.tokenizer(
        prompts, padding="max_length", max_length=pipeline.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    return tokens.input_ids


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def settings_fingerprint(settings: TrainingSettings, method: dict, n_images: int) -> str:
    return json.dumps({"training": asdict(settings), "method": method, "images": n_images}, sort_keys=True)


def save_checkpoint(folder: Path, state: dict) -> None:
    """Write to a temporary file, then rename: a job killed while saving keeps its previous checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{CHECKPOINT}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, folder / CHECKPOINT)


def load_checkpoint(folder: Path, fingerprint: str) -> dict | None:
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["fingerprint"] != fingerprint:
        log.warning("%s was made with other settings; starting from step 0", path)
        return None
    log.info("resuming from %s at step %d", path, state["step"])
    return state


def training_steps(n_images: int, settings: TrainingSettings) -> int:
    """Optimizer steps of a run: every epoch ends with a batch of what is left."""
    return settings.epochs * -(-n_images // settings.batch_size)


def finetune(
    pipeline: StableDiffusionPipeline,
    adapter: Adapter,
    train_prompts: pd.DataFrame,
    settings: TrainingSettings,
    method: dict,
    checkpoint_dir: Path,
    image_size: int,
    stop_after_step: int | None = None,
    defence: DefenceSettings | None = None,
    proxy_non_members: pd.DataFrame | None = None,
) -> dict:
    """Train `adapter` (already attached to `pipeline`); returns the loss log and the run summary.

    `stop_after_step` ends the run early as a kill would, after that step's checkpoint (used by tests). `defence`:
    the method's privacy defence, whose proxy attack model learns `proxy_non_members` (image, prompt) as
    non-members (`privacy_defence.proxy_non_members`).
    """
    device = default_device()
    precision = autocast_dtype(device, settings.mixed_precision)
    pipeline.to(device)
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    images = load_images(train_prompts.image.tolist(), image_size)
    latent_mean, latent_std = encode_latent_distribution(pipeline, images)
    token_ids = encode_prompts(pipeline, train_prompts.prompt.tolist())
    scaling = pipeline.vae.config.scaling_factor
    n_images = len(images)
    steps_per_epoch = -(-n_images // settings.batch_size)
    total_steps = training_steps(n_images, settings)

    optimizer = torch.optim.Adam(adapter.trainable_parameters(), lr=settings.learning_rate, betas=settings.adam_betas)
    # ARENA's gates take the paper's proximal gradient steps instead of Adam's (migros.tuners.arena)
    optimizers = [optimizer, adapter.gate_optimizer] if isinstance(adapter, GatedAdapter) else [optimizer]
    grad_scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    defender = None
    if defence is not None:
        if proxy_non_members is None:
            raise ValueError("a privacy defence needs the non-members of its proxy attack model")
        non_members = encode_latent_distribution(pipeline, load_images(proxy_non_members.image.tolist(), image_size))
        defender = StablePrivateLoRA(
            defence, LatentSet(latent_mean, latent_std, token_ids),
            LatentSet(*non_members, encode_prompts(pipeline, proxy_non_members.prompt.tolist())), settings.seed, device)
    fingerprint = settings_fingerprint(settings, method, n_images)
    losses: list[dict] = []
    start_step = 0
    checkpoint = load_checkpoint(checkpoint_dir, fingerprint)
    if checkpoint:
        adapter.load_state_dict(checkpoint["adapter"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        start_step, losses = checkpoint["step"], checkpoint["losses"]
        if defender:
            defender.load_state_dict(checkpoint["defence"])

    def noise_prediction(sample: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator):
        """(the UNet's noise prediction, the noise) in fp32 for latent samples at timesteps drawn from `generator`."""
        latents = (sample * scaling).to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(sample),), generator=generator).to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            hidden = pipeline.text_encoder(tokens.to(device))[0]
            prediction = pipeline.unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        return prediction.float(), noise.float()

    def squared_errors(sample: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        prediction, noise = noise_prediction(sample, tokens, generator)
        return (prediction - noise).pow(2)

    def batch_prediction(step: int):
        """The noise prediction of step `step` (1-based), from that step's own random draws."""
        epoch, position = divmod(step - 1, steps_per_epoch)
        order = torch.randperm(n_images, generator=step_generator(settings.seed, -1 - epoch))
        index = order[position * settings.batch_size : (position + 1) * settings.batch_size]
        generator = step_generator(settings.seed, step)
        sample = latent_mean[index] + latent_std[index] * torch.randn(latent_mean[index].shape, generator=generator)
        return noise_prediction(sample, token_ids[index], generator)

    def batch_objective(step: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(the noise-prediction loss of step `step`, what the adapter minimises, the defence's log entries)."""
        prediction, noise = batch_prediction(step)
        loss = F.mse_loss(prediction, noise)
        if defender is None:
            return loss, loss, {}
        objective, member_loss = defender.objective(loss, (prediction - noise).pow(2))
        return loss, objective, {"proxy_member_loss": member_loss.item()}

    pipeline.unet.train()
    pipeline.text_encoder.train()
    started = time.perf_counter()
    progress = tqdm(range(start_step + 1, total_steps + 1), initial=start_step, total=total_steps, desc="fine-tune", unit="step")
    skipped_steps = 0
    for step in progress:
        # the log shows the noise-prediction loss alone, without a kind's penalty or the defence's denominator
        loss, objective, defence_log = batch_objective(step)
        for each in optimizers:
            each.zero_grad(set_to_none=True)
        grad_scaler.scale(objective + adapter.regularisation()).backward()
        stepped = scaled_optimizer_step(grad_scaler, *optimizers)
        loss_value = loss.item()
        # Free this step's graph first: it holds the adapters' gradient accumulators, which would keep the
        # pre-expansion shapes of the parameters that an expansion grows in place.
        del loss, objective
        # A trial's loss is scaled like the step's, so fp16 gradients do not underflow (the ratio is unaffected).
        rank_changes = adapter.after_optimizer_step(
            step, lambda: grad_scaler.scale(batch_objective(step)[1]), optimizer, stepped)
        if defender:
            defence_log["proxy_loss"] = defender.train_proxy(step, squared_errors)
        skipped_steps += not stepped
        losses.append({"step": step, "epoch": (step - 1) // steps_per_epoch + 1, "loss": loss_value, **defence_log})
        progress.set_postfix(loss=f"{loss_value:.4f}", rank_changes=len(rank_changes))
        if step % settings.checkpoint_every == 0 or step == total_steps or step == stop_after_step:
            save_checkpoint(checkpoint_dir, {
                "fingerprint": fingerprint, "step": step, "adapter": adapter.state_dict(),
                "optimizer": optimizer.state_dict(), "grad_scaler": grad_scaler.state_dict(),
                "torch_rng": torch.get_rng_state(), "losses": losses,
                **({"defence": defender.state_dict()} if defender else {}),
            })
        if step == stop_after_step:
            break
    pipeline.unet.eval()
    pipeline.text_encoder.eval()
    return {
        "losses": pd.DataFrame(losses, columns=["step", "epoch", "loss", *(DEFENCE_LOG_COLUMNS if defender else ())]),
        "summary": {
            "steps": total_steps,
            "resumed_from_step": start_step,
            "seconds_this_run": round(time.perf_counter() - started, 1),
            "device": device.type,
            "mixed_precision": str(precision).removeprefix("torch.") if precision else "no",
            "skipped_steps": skipped_steps,
            **({"privacy_defence": defence.defence, "proxy_non_members": len(proxy_non_members)} if defender else {}),
        },
    }


def write_rank_history(adapter: Adapter, pipeline: StableDiffusionPipeline, path: Path) -> None:
    """Every rank change as (step, layer, rank, parameters); parameters = rank x (in + out), the layer's LoRA size."""
    weights_per_rank = {}
    for layer in adapter.ranks():
        submodel, _, name = layer.partition(".")
        module = getattr(pipeline, submodel).get_submodule(name)
        linear = getattr(module, "base_layer", module)  # peft and SeLoRA both wrap the original nn.Linear
        weights_per_rank[layer] = linear.in_features + linear.out_features
    history = pd.DataFrame(adapter.rank_history(), columns=["step", "layer", "rank"])
    history["parameters"] = history["rank"] * history["layer"].map(weights_per_rank)
    history.to_csv(path, index=False)


def exported_parameters(adapter_dir: Path) -> int:
    """Elements of every tensor in an exported adapter (`Adapter.save_lora`): the adapter's size as it is used."""
    with safe_open(adapter_dir / LORA_WEIGHT_NAME_SAFE, "pt") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())


def stage_summary(training_summary: dict, method: dict, ranks: dict[str, int], parameters: int) -> dict:
    """The stage's finetune.json: the training run's summary (`finetune`), the method, its final ranks and, as
    `trainable_parameters`, the final adapter's size (`exported_parameters`): what survived pruning for ARENA and
    AdaLoRA (gates and singular values folded in), not the tensors they started with."""
    return {**training_summary, "method": method, "trainable_parameters": parameters, "final_rank_total": sum(ranks.values()),
            "final_rank_max": max(ranks.values()), "adapted_layers": len(ranks)}


def run_finetune_stage(
    base_model_dir: Path,
    train_prompts_csv: Path,
    method_name: str,
    method: dict,
    settings: TrainingSettings,
    image_size: int,
    checkpoint_dir: Path,
    adapter_dir: Path,
    loss_csv: Path,
    rank_history_csv: Path,
    summary_json: Path,
    proxy_non_members_csv: Path | None = None,
) -> None:
    """Everything the `finetune` rule does; `method` is the method's `methods` entry, whose training overrides
    (e.g. its own `epochs`) replace those of `settings`; `proxy_non_members_csv` (rule `proxy_non_members`) for a
    method with a privacy defence."""
    from migros.adapters import build_adapter, training_overrides
    from migros.diffusion.base_model import load_prepared_base_model

    settings = replace(settings, **training_overrides(method))
    pipeline = load_prepared_base_model(base_model_dir)
    train_prompts = pd.read_csv(train_prompts_csv)
    adapter = build_adapter(pipeline, method, seed=settings.seed, total_steps=training_steps(len(train_prompts), settings),
                            name=method_name)
    probe_prompt = train_prompts.prompt.iloc[0]
    base_output = probe_output(pipeline, probe_prompt, image_size)  # a fresh adapter leaves the output unchanged
    defence = DefenceSettings.from_method(method, method_name)
    proxy_non_members = pd.read_csv(proxy_non_members_csv) if defence else None
    result = finetune(pipeline, adapter, train_prompts, settings, method, checkpoint_dir, image_size,
                      defence=defence, proxy_non_members=proxy_non_members)
    adapter.save_lora(adapter_dir)
    save_probe(adapter_dir / PROBE_FILE, probe_prompt, image_size, base_output, probe_output(pipeline, probe_prompt, image_size))
    result["losses"].to_csv(loss_csv, index=False)
    write_rank_history(adapter, pipeline, rank_history_csv)
    summary = stage_summary(result["summary"], method, adapter.ranks(), exported_parameters(adapter_dir))
    summary_json.write_text(json.dumps(summary, indent=2))
