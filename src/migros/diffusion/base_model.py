"""The base latent-diffusion model: loading Stable Diffusion offline, and the small demo model that stands in for it.

`load_pipeline` is the one code path that loads a base model, SD v1.5 from the Hugging Face cache or any
pipeline folder, the demo model included. Nothing is downloaded at run time: a model that is not on disk stops
the run with the steps that put it there.

No SD weights ship in any package, so the embedded default pretrains a small model with SD's architecture and
classes (AutoencoderKL with SD's 8x geometry, UNet2DConditionModel with cross-attention, CLIPTextModel with the
real CLIP tokenizer, SD's noise schedule) on a generic MRI corpus (`demo_corpus`), in a few CPU minutes. The
fine-tuning code then treats it exactly as it would treat SD v1.5.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import logging
import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from huggingface_hub import constants as hub_constants
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from migros.devices import default_device
from migros.diffusion.demo_corpus import DemoCorpus, build_demo_corpus
from migros.diffusion.model_ids import SAME_WEIGHTS, SD15_ID
from migros.settings import StageSettings

LOGGER = logging.getLogger(__name__)

CLIP_MAX_LENGTH = 77
CLIP_VOCAB_SIZE = 49408
# CLIP keeps the first 49152 - 256 - 2 merges of its BPE file (line 0 is a header): with the 256 byte symbols,
# their 256 end-of-word forms and the two special tokens this gives the 49408-token vocabulary of SD's tokenizer.
CLIP_MERGES = 49152 - 256 - 2
# The noise schedule of SD v1.5 (its scheduler/scheduler_config.json); PNDM is SD v1.5's default sampler, and
# training reads the same config into a DDPMScheduler. from_config keeps keys a class does not take (clip_sample).
SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
PRETRAINING_LOG = "demo_pretraining.json"
# A Hugging Face model id, "owner/name"; any other source that is not an existing path is a missing folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class BaseModelError(RuntimeError):
    """The base model cannot be loaded from disk; the message says how to put it there."""


def load_pipeline(
    source: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | None = None,
) -> StableDiffusionPipeline:
    """Load a Stable Diffusion pipeline from a local folder or, for a model id, from the Hugging Face cache only.

    `source` is a folder written by `save_pretrained` if such a path exists, otherwise a model id
    ("owner/name") looked up in `cache_dir` (default: the hub cache of HF_HOME / HF_HUB_CACHE), never online.
    """
    path = Path(source).expanduser()
    if path.exists() and not (path / "model_index.json").is_file():
        raise BaseModelError(
            f"Base model folder {path} is not a diffusers pipeline folder (no model_index.json).\n" + _how_to_place()
        )
    if not path.exists() and not HUB_ID.fullmatch(str(source)):
        raise BaseModelError(f"Base model folder {path} does not exist.\n" + _how_to_place())
    # A model id is also looked up under the ids of the same weights (SD v1.5's former id), so a cache made
    # before the move serves a config that names the new id, and the other way round.
    candidates = [str(path)] if path.exists() else [str(source), *SAME_WEIGHTS.get(str(source), ())]
    first_error = None
    for candidate in candidates:
        try:
            pipeline = StableDiffusionPipeline.from_pretrained(
                candidate,
                dtype=dtype,
                cache_dir=cache_dir,
                local_files_only=True,
                # The safety checker is an NSFW classifier for natural images: on MRI it would only blank images at
                # random, and it needs weights of its own. Medical images need no such filter.
                safety_checker=None,
                requires_safety_checker=False,
            )
        except OSError as error:
            first_error = first_error or error
            continue
        if candidate != candidates[0]:
            LOGGER.warning("%s is not in the Hugging Face cache; using %s, the same weights", source, candidate)
        return pipeline.to(device)
    if path.exists():
        problem = f"Base model folder {path} is incomplete or unreadable: {first_error}"
    else:
        cache = cache_dir or hub_constants.HF_HUB_CACHE
        problem = (
            f"Base model {' / '.join(map(repr, candidates))} is not in the Hugging Face cache ({cache}) and no "
            f"folder of that name exists; nothing is downloaded at run time. "
            f"({type(first_error).__name__}: {first_error})"
        )
    downloadable = SD15_ID if path.exists() or str(source) in SAME_WEIGHTS else str(source)
    raise BaseModelError(problem + "\n" + _how_to_place(downloadable)) from first_error


def _how_to_place(model_id: str = SD15_ID) -> str:
    """The ways to put a base model on a machine without internet, for the error messages."""
    return (
        "To place it, either\n"
        f"  1. on a machine with internet run `huggingface-cli download {model_id}` (or `hf download {model_id}`), "
        "copy its cache folder (~/.cache/huggingface) here and set HF_HOME to the copy (or HF_HUB_CACHE to its "
        "hub/ folder), then use the model id as the base model source in the config; or\n"
        f"  2. write the pipeline into a folder with StableDiffusionPipeline.from_pretrained({model_id!r})"
        ".save_pretrained(folder), copy the folder here and set the base model source in the config to its path."
    )


def clip_tokenizer() -> CLIPTokenizer:
    """SD's tokenizer, built from the CLIP BPE vocabulary that ships inside the open-clip-torch wheel.

    transformers 5 builds an empty tokenizer from `CLIPTokenizer(vocab_file=..., merges_file=...)`, so the files
    are written to a folder and loaded with `from_pretrained`.
    """
    with tempfile.TemporaryDirectory() as folder:
        write_clip_vocabulary(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=CLIP_MAX_LENGTH)
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tokenizer)} tokens, expected {CLIP_VOCAB_SIZE}")
    return tokenizer


def write_clip_vocabulary(folder: Path) -> None:
    """CLIP's vocab.json and merges.txt, the files of SD's tokenizer folder, into `folder`."""
    vocab, merges = _clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's token → id table and merge list, in the order CLIP assigns ids."""
    bpe_file = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    merges = tuple(gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")[1 : CLIP_MERGES + 1])
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _byte_symbols() -> list[str]:
    """Byte-level BPE's printable stand-in for each byte, in CLIP's id order: printable bytes first, then the rest."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + rank) for rank in range(len(others))]


def build_demo_pipeline(
    image_size: int = 64,
    vae_channels: tuple[int, ...] = (16, 16, 32, 64),
    unet_channels: tuple[int, ...] = (64, 64, 64),
    unet_attention_head_dim: int = 4,  # diffusers' name for the number of heads; 4 trains 20 % faster than SD's 8
    text_hidden_size: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    norm_groups: int = 8,
    seed: int = 0,
) -> StableDiffusionPipeline:
    """A randomly initialised small pipeline with SD v1.5's classes, geometry and noise schedule.

    Four VAE blocks (three downsamplings) give SD's 8x latent geometry with 4 channels; the UNet's first blocks
    cross-attend to the CLIP text encoder's last hidden state, as in SD. The VAE's scaling_factor is set by
    pretraining. Weights depend only on `seed`; the global torch RNG is left untouched.
    """
    if len(vae_channels) != 4:
        raise ValueError(f"SD's 8x geometry needs 4 VAE blocks, got vae_channels={vae_channels}")
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=tuple(vae_channels),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=norm_groups,
            sample_size=image_size,
        )
        blocks = len(unet_channels)
        unet = UNet2DConditionModel(
            sample_size=image_size // 8,
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
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=PNDMScheduler.from_config({**SD_SCHEDULE, "skip_prk_steps": True}),
        safety_checker=None,  # see load_pipeline: an NSFW filter for natural images has no place on MRI
        feature_extractor=None,
        requires_safety_checker=False,
    )


def pretrain_demo_model(
    output_dir: str | Path,
    *,
    image_size: int,
    seed: int,
    corpus_size: int,
    vae_steps: int,
    unet_steps: int,
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
    `build_demo_pipeline`. A summary (losses, times, sizes) goes to demo_pretraining.json.

    The defaults here and the schema's of base_model.demo fit a 5-minute CPU budget at 64 px. They were tuned on
    held-out noise-prediction loss: the UNet gains most from a high learning rate, while the text encoder needs a
    lower one (at the UNet's rate it stopped telling "T1" from "T2" captions apart).
    """
    if vae_crop_size < 8:
        raise ValueError(f"vae_crop_size must be at least 8 (one latent pixel), got {vae_crop_size}")
    device = torch.device(device) if device else default_device()
    clock = _StageClock()
    corpus = build_demo_corpus(corpus_size, image_size, seed, show_progress)
    pipeline = build_demo_pipeline(image_size=image_size, seed=seed, **(architecture or {})).to(device)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(corpus.images).unsqueeze(1)
    clock.lap("corpus and model")
    vae_loss = _train_vae(
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


def _train_vae(
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
    """Linear warm-up then cosine decay to 0: the most out of a fixed, small number of steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


BASE_MODEL_RECORD = "base_model.json"


@dataclass(frozen=True)
class DemoModelSettings:
    """The `base_model.demo` section: the keyword arguments of `pretrain_demo_model` that the config sets."""

    image_size: int
    seed: int
    corpus_size: int
    vae_steps: int
    unet_steps: int


@dataclass(frozen=True)
class BaseModelSettings(StageSettings):
    """The `base_model` section; `demo` is used only when `source` is "demo"."""

    SECTION = "base_model"
    source: str
    demo: DemoModelSettings


def prepare_base_model(settings: BaseModelSettings, out_dir: Path) -> None:
    """What the `base_model` rule does: pretrain the demo model, or check that the configured model loads.

    Either way `out_dir/base_model.json` names what downstream rules load, through `load_prepared_base_model`,
    so SD v1.5 and the demo model go through the same code path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.source == "demo":
        pretrain_demo_model(out_dir / "pipeline", **asdict(settings.demo))
        record = {"source": "pipeline", "relative_to_record": True}
    else:
        load_pipeline(settings.source)  # fails here, with instructions, rather than in every fine-tuning job
        record = {"source": settings.source, "relative_to_record": False}
    (out_dir / BASE_MODEL_RECORD).write_text(json.dumps(record, indent=2))


def load_prepared_base_model(
    base_model_dir: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableDiffusionPipeline:
    record = json.loads((base_model_dir / BASE_MODEL_RECORD).read_text())
    source = base_model_dir / record["source"] if record["relative_to_record"] else record["source"]
    return load_pipeline(source, device=device, dtype=dtype)
