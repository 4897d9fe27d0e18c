"""The autoencoder ceiling: the base model's VAE applied to real slices (encode, then decode the posterior mean).

A latent diffusion model can only produce what its VAE decodes, so no adapter can beat the VAE's own
reconstructions of real images. Scoring them like a generated set (FID against the real reference split, the
real-only classifier's AUC on them) says whether a poor score comes from the denoiser or from the autoencoder:
a lesion the VAE blurs away cannot be generated either.
"""

from pathlib import Path

import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from tqdm import tqdm

from migros.devices import default_device, inference_dtype
from migros.diffusion.finetune import load_images

MANIFEST_COLUMNS = ["file", "label", "source_image"]


@torch.no_grad()
def reconstruct(pipeline: StableDiffusionPipeline, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """VAE decode(encode(x).mean) of (N, 3, H, W) images in [-1, 1]; returns (N, 3, H, W) in [-1, 1]."""
    vae = pipeline.vae
    outputs = []
    for batch in tqdm(images.split(batch_size), desc="VAE reconstruction", unit="batch"):
        latents = vae.encode(batch.to(vae.device, vae.dtype)).latent_dist.mean
        outputs.append(vae.decode(latents).sample.float().clamp(-1, 1).cpu())
    return torch.cat(outputs)


def run_reconstruction_stage(base_model_dir: Path, metadata_csv: Path, split: str, image_size: int, images_dir: Path,
                             manifest_csv: Path) -> None:
    """Reconstruct every real slice of `split` with the base model's VAE; a manifest like a generated set's."""
    from migros.diffusion.base_model import load_prepared_base_model

    slices = pd.read_csv(metadata_csv).query("split == @split")
    if slices.empty:
        raise ValueError(f"{metadata_csv} has no slices in split {split!r}")
    device = default_device()
    pipeline = load_prepared_base_model(base_model_dir, device=device, dtype=inference_dtype(device))
    write_reconstructions(pipeline, slices, image_size, images_dir, manifest_csv)


def write_reconstructions(pipeline: StableDiffusionPipeline, slices: pd.DataFrame, image_size: int, images_dir: Path,
                          manifest_csv: Path) -> None:
    """`images_dir/<index>.png` for every row (image, label) of `slices`, and the manifest of them."""
    reconstructions = reconstruct(pipeline, load_images(slices.image.tolist(), image_size))
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (row, image) in enumerate(zip(slices.itertuples(), reconstructions)):
        path = images_dir / f"{index:05d}.png"
        pixels = ((image.mean(0) + 1) * 127.5).round().to(torch.uint8).numpy()  # grey: the VAE's 3 channels averaged
        Image.fromarray(pixels, mode="L").save(path)
        rows.append({"file": str(path), "label": int(row.label), "source_image": row.image})
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(manifest_csv, index=False)
