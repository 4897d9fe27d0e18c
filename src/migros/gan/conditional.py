"""A small class-conditional GAN for the CPU demo: trained from scratch on the same training slices as the
adapters, sampled into the same `images/` + `manifest.csv` as every generated set.

- Generator: z (latent_dim) concatenated with a learned class embedding → a feature map of the base size (the
  image size halved while it stays even and at least 4: 4 px for 64, 7 px for 224) → nearest-neighbour
  upsampling blocks (conv 3×3, LeakyReLU, pixel norm) to the image size → one grayscale channel, tanh.
- Discriminator: strided convolutions with spectral normalisation and LeakyReLU down to the base size, the
  batch's feature spread appended as one channel (minibatch standard deviation, Karras et al. 2018: without it the
  generator collapsed to one image per class on the 40 demo slices), one more convolution, summed over space,
  and a projection head (Miyato & Koyama 2018): D(x, y) = wᵀh + embed(y)ᵀh.
- Hinge loss, Adam with β₁ = 0 (the usual pairing with spectral normalisation), one D and one G step per step.
- Differentiable translation (Zhao et al. 2020, DiffAugment) of real and fake images before D: with 20–200
  training slices D memorises the real set within a few hundred steps without it.
- Sampling uses an exponential moving average of the generator's weights; no layer looks across the batch, so
  image i depends on its seed and label alone.
"""

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm import tqdm

from migros.devices import default_device
from migros.images import open_image
from migros.settings import MethodSettings

CLASSES = 2  # 0 healthy, 1 tumour
LOSS_COLUMNS = ["step", "discriminator_loss", "generator_loss"]


@dataclass(frozen=True)
class GanSettings(MethodSettings):
    """A `methods` entry of kind `gan` (its `kind` key left out)."""

    SECTION = "methods (kind gan)"

    steps: int  # optimizer steps, each one of D and one of G
    batch_size: int
    learning_rate: float
    adam_betas: tuple[float, float]
    latent_dim: int
    channels: int  # width of the last generator block and the first discriminator block; doubles per scale, up to 8×
    ema_decay: float  # of the generator weights used for sampling
    translation: float  # largest shift of DiffAugment's translation, as a fraction of the image side
    mode_seeking: float  # weight of the mode-seeking term (0 = none)
    seed: int


def base_size(image_size: int) -> int:
    """The side of the generator's first feature map: the image size halved while it stays even and ≥ 4."""
    if image_size < 8 or image_size % 2:
        raise ValueError(f"the GAN needs an even image size of at least 8 px, got {image_size}")
    size = image_size
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
    return size


def widths(image_size: int, channels: int) -> list[int]:
    """Feature widths from the base size up to the image size: channels × 8, ×4, ×2, ×1, ... (at most 8×)."""
    scales = round(math.log2(image_size // base_size(image_size)))
    return [channels * 2 ** min(scales - index, 3) for index in range(scales + 1)]


class PixelNorm(nn.Module):
    """Each pixel's feature vector scaled to unit mean square (Karras et al. 2018): per image, so the generator
    computes the same in training and sampling (BatchNorm's running statistics in eval mode shrank the effect of
    the noise until every sample of a class looked alike)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * torch.rsqrt(features.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    def __init__(self, image_size: int, latent_dim: int, channels: int):
        super().__init__()
        sizes = widths(image_size, channels)
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(CLASSES, latent_dim)
        self.base = base_size(image_size)
        self.first_width = sizes[0]
        features = sizes[0] * self.base ** 2
        self.project = nn.Sequential(nn.Linear(2 * latent_dim, features), nn.LeakyReLU(0.2))
        blocks = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in, width_out, 3, padding=1),
                       nn.LeakyReLU(0.2), PixelNorm()]
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(sizes[-1], 1, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.project(torch.cat([z, self.embed(labels)], dim=1))
        return self.blocks(PixelNorm()(features.view(len(z), self.first_width, self.base, self.base)))


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int):
        super().__init__()
        sizes = widths(image_size, channels)[::-1]  # image size → base size
        layers = [spectral_norm(nn.Conv2d(1, sizes[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [spectral_norm(nn.Conv2d(width_in, width_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        # the batch's feature spread as one more channel, so that D sees a batch of near-identical images
        self.final = nn.Sequential(spectral_norm(nn.Conv2d(sizes[-1] + 1, sizes[-1], 3, padding=1)), nn.LeakyReLU(0.2))
        self.linear = spectral_norm(nn.Linear(sizes[-1], 1))
        self.embed = spectral_norm(nn.Embedding(CLASSES, sizes[-1]))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        spread = features.std(dim=0, unbiased=False).mean().expand(len(images), 1, *features.shape[2:])
        features = self.final(torch.cat([features, spread], dim=1)).sum(dim=(2, 3))
        return self.linear(features).squeeze(1) + (self.embed(labels) * features).sum(dim=1)


def parameter_counts(image_size: int, settings: GanSettings) -> dict[str, int]:
    """What is trained (both networks) and what is kept for sampling (the generator)."""
    generator_size = sum(p.numel() for p in Generator(image_size, settings.latent_dim, settings.channels).parameters())
    discriminator_size = sum(p.numel() for p in Discriminator(image_size, settings.channels).parameters())
    return {"trainable_parameters": generator_size + discriminator_size, "generator_parameters": generator_size}


def translate(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ±fraction of its side in x and y (drawn per image), filling with -1 (black);
    differentiable in the images. fraction 0 returns the images unchanged."""
    size = images.shape[-1]
    reach = int(round(fraction * size))
    if reach == 0:
        return images
    padded = F.pad(images, (reach,) * 4, value=-1.0)
    shifts = torch.randint(0, 2 * reach + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[index, :, dy:dy + size, dx:dx + size] for index, (dy, dx) in enumerate(shifts)])


def load_training_images(train_prompts: pd.DataFrame, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training slices as (N, 1, S, S) in [-1, 1] and their labels."""
    arrays = [np.asarray(open_image(path, "L", (image_size, image_size)), np.float32) for path in train_prompts.image]
    images = torch.from_numpy(np.stack(arrays)).unsqueeze(1) / 127.5 - 1.0
    return images, torch.tensor(train_prompts.label.astype(int).to_numpy())


def mode_seeking_ratio(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the pairs (i, i + half) of |G(z_i) − G(z_j)| / |z_i − z_j| (mean absolute differences): how much
    the images move with the noise. Its inverse, added to the generator's loss (Mao et al. 2019, MSGAN), keeps
    the generator from ignoring the noise, which it did on the 40 demo slices without it."""
    half = len(z) // 2
    image_distance = (fake[:half] - fake[half:]).abs().flatten(1).mean(dim=1)
    noise_distance = (z[:half] - z[half:]).abs().mean(dim=1)
    return (image_distance / noise_distance).mean()


def train_gan(images: torch.Tensor, labels: torch.Tensor, settings: GanSettings) -> tuple[Generator, pd.DataFrame]:
    """Train on (N, 1, S, S) images in [-1, 1]; returns the moving-average generator (eval mode) and the losses."""
    device = default_device()
    torch.manual_seed(settings.seed)  # the initial weights
    generator_net = Generator(images.shape[-1], settings.latent_dim, settings.channels).to(device)
    discriminator = Discriminator(images.shape[-1], settings.channels).to(device)
    average = Generator(images.shape[-1], settings.latent_dim, settings.channels).to(device)
    average.load_state_dict(generator_net.state_dict())
    average.requires_grad_(False)
    optimizers = [torch.optim.Adam(net.parameters(), lr=settings.learning_rate, betas=settings.adam_betas)
                  for net in (generator_net, discriminator)]
    draws = torch.Generator().manual_seed(settings.seed)  # batches, latents, augmentation
    images, labels = images.to(device), labels.to(device)
    losses = []
    for step in tqdm(range(1, settings.steps + 1), desc="GAN", unit="step"):
        index = torch.randint(len(images), (settings.batch_size,), generator=draws).to(device)
        real, real_labels = images[index], labels[index]
        # fakes in two halves of the same labels (those of the real batch's first half): pairs that differ only
        # in their noise, for the mode-seeking term
        half = settings.batch_size // 2
        fake_labels = real_labels[:half].repeat(2)
        z = torch.randn(2 * half, settings.latent_dim, generator=draws).to(device)
        fake = generator_net(z, fake_labels)

        d_real = discriminator(translate(real, settings.translation, draws), real_labels)
        d_fake = discriminator(translate(fake.detach(), settings.translation, draws), fake_labels)
        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        optimizers[1].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers[1].step()

        g_loss = -discriminator(translate(fake, settings.translation, draws), fake_labels).mean()
        if settings.mode_seeking:
            g_loss = g_loss + settings.mode_seeking / (mode_seeking_ratio(fake, z) + 1e-5)
        optimizers[0].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers[0].step()

        with torch.no_grad():
            for kept, current in zip(average.parameters(), generator_net.parameters()):
                kept.lerp_(current, 1 - settings.ema_decay)
        losses.append((step, d_loss.item(), g_loss.item()))
    return average.eval(), pd.DataFrame(losses, columns=LOSS_COLUMNS)


@torch.no_grad()
def generate_gan_images(generator_net: Generator, prompts: pd.DataFrame, out_dir: Path, batch_size: int) -> pd.DataFrame:
    """Write `out_dir/<index>.png` for every row of `prompts` (index, prompt, label, seed), the latent of image i
    drawn from its own seed; returns the manifest (file, prompt, label, seed). The GAN sees the label only; the
    prompt is kept for the downstream stages' bookkeeping."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(generator_net.parameters()).device
    rows = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch"):
        batch = prompts.iloc[start:start + batch_size]
        z = torch.stack([torch.randn(generator_net.latent_dim, generator=torch.Generator().manual_seed(int(seed)))
                         for seed in batch.seed]).to(device)
        labels = torch.tensor(batch.label.astype(int).to_numpy(), device=device)
        pixels = ((generator_net(z, labels) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        for row, image in zip(batch.itertuples(), pixels[:, 0]):
            path = out_dir / f"{row.index:05d}.png"
            Image.fromarray(image).convert("RGB").save(path)  # RGB like the diffusion pipelines' images
            rows.append({"file": str(path), "prompt": row.prompt, "label": row.label, "seed": row.seed})
    return pd.DataFrame(rows, columns=["file", "prompt", "label", "seed"])


def run_gan_stage(train_prompts_csv: Path, generation_prompts_csv: Path, settings: GanSettings, image_size: int,
                  batch_size: int, images_dir: Path, manifest_csv: Path, generator_path: Path, loss_csv: Path,
                  summary_json: Path) -> None:
    """The GAN method of one dataset: train on its training slices, then draw every generation prompt's image
    (`batch_size` images per forward pass) into the layout of a generated set."""
    images, labels = load_training_images(pd.read_csv(train_prompts_csv), image_size)
    started = time.monotonic()
    generator_net, losses = train_gan(images, labels, settings)
    seconds = time.monotonic() - started
    generator_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(generator_net.state_dict(), generator_path)
    losses.to_csv(loss_csv, index=False)
    manifest = generate_gan_images(generator_net, pd.read_csv(generation_prompts_csv), images_dir, batch_size)
    manifest.to_csv(manifest_csv, index=False)
    summary = {
        "kind": "gan",
        "steps": settings.steps,
        "seconds_this_run": round(seconds, 1),
        **parameter_counts(image_size, settings),
        "device": str(next(generator_net.parameters()).device),
        "settings": asdict(settings),
    }
    summary_json.write_text(json.dumps(summary, indent=2) + "\n")
