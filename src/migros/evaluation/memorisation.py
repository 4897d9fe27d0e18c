"""Memorisation check: how close is each synthetic image to its nearest real training image, by SSIM.

A model fine-tuned on 100-200 slices can reproduce training slices instead of new anatomy. For every raw
synthetic image (grayscale, not post-processed) the nearest training image by SSIM is found; images at or above
`near_copy_threshold` count as near-copies. As a reference for what "similar" means for distinct patients,
every real test image is matched to its nearest training image the same way.

SSIM follows Wang et al. 2004: 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255,
population (co)variances, mean over the positions where the window lies inside the image. This equals
`skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)` (tested against it). This batched torch version compares every synthetic image with every
training image at once: ~8× faster than scikit-image pair by pair (1000 × 40 pairs of 64 px on one core: 3.9 s
against 32 s, `tests/benchmarks/ssim_speed.py`).

Settings: `near_copy_threshold` (SSIM at or above which a synthetic image is a near-copy).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from migros.devices import default_device
from migros.images import open_image, read_gray_stack
from migros.settings import StageSettings

WINDOW_SIGMA = 1.5
WINDOW_RADIUS = 5  # int(3.5 * sigma + 0.5): the 11-tap window of Wang et al.
DATA_RANGE = 255.0
C1 = (0.01 * DATA_RANGE) ** 2
C2 = (0.03 * DATA_RANGE) ** 2
# query × reference × pixels held at once: 16 MB in float32 keeps the temporaries in cache (4× faster on the
# CPU than 256 MB chunks).
PAIR_BUFFER_ELEMENTS = 2**22
PAIRS_SHOWN = 6


@dataclass(frozen=True)
class MemorisationSettings(StageSettings):
    SECTION = "memorisation"
    near_copy_threshold: float  # SSIM at or above which a synthetic image is a near-copy


def gaussian_blur_matrix(size: int, device: torch.device) -> torch.Tensor:
    """(size, size - 2 × radius) matrix M: `image @ M` is the valid-mode Gaussian filtering along the last axis.

    Filtering by matrix product is a banded waste of multiplications, but batched matrix products run several
    times faster than a single-channel conv2d on the CPU.
    """
    taps = torch.exp(-torch.arange(-WINDOW_RADIUS, WINDOW_RADIUS + 1, dtype=torch.float64) ** 2 / (2 * WINDOW_SIGMA**2))
    taps /= taps.sum()
    width = size - 2 * WINDOW_RADIUS
    if width < 1:
        raise ValueError(f"images of {size} px are smaller than the {2 * WINDOW_RADIUS + 1}-px SSIM window")
    matrix = torch.zeros(size, width, dtype=torch.float64)
    for column in range(width):
        matrix[column : column + 2 * WINDOW_RADIUS + 1, column] = taps
    return matrix.to(device, torch.float32)


def ssim_matrix(queries: np.ndarray, references: np.ndarray, device: torch.device | None = None) -> np.ndarray:
    """SSIM of every query image with every reference image: (n_queries, n_references).

    Both inputs are uint8 (or 0-255 float) arrays of shape (n, height, width) of the same image size.
    """
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(f"image sizes differ: queries {queries.shape[1:]}, references {references.shape[1:]}")
    device = device or default_device()
    height, width = references.shape[1:]
    rows, columns = gaussian_blur_matrix(height, device), gaussian_blur_matrix(width, device)

    def blur(images: torch.Tensor) -> torch.Tensor:
        return rows.T @ images @ columns

    def moments(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Local mean, and the centred pixels, their local mean and variance. (Co)variances are computed on
        pixels minus the image mean: the same values, with less float32 cancellation."""
        pixels = torch.as_tensor(np.asarray(images, np.float32), device=device)
        centred = pixels - pixels.mean(dim=(-2, -1), keepdim=True)
        centred_mean = blur(centred)
        return blur(pixels), centred, centred_mean, blur(centred * centred) - centred_mean**2

    query_mean, query_centred, query_centred_mean, query_variance = moments(queries)
    reference_mean, reference_centred, reference_centred_mean, reference_variance = moments(references)
    query_square, reference_square = query_mean**2, reference_mean**2
    chunk = max(1, PAIR_BUFFER_ELEMENTS // (len(references) * height * width))
    scores = []
    for start in tqdm(range(0, len(queries), chunk), desc="SSIM", unit="chunk", disable=len(queries) <= chunk):
        batch = slice(start, start + chunk)
        # In-place arithmetic: the pair tensors are large; fewer temporaries made this loop ~20 % faster on the CPU.
        covariance = blur(query_centred[batch, None] * reference_centred[None])
        covariance.sub_(query_centred_mean[batch, None] * reference_centred_mean[None])
        numerator = (query_mean[batch, None] * reference_mean[None]).mul_(2).add_(C1).mul_(covariance.mul_(2).add_(C2))
        denominator = (query_square[batch, None] + reference_square[None]).add_(C1)
        denominator.mul_(query_variance[batch, None] + reference_variance[None] + C2)
        scores.append(numerator.div_(denominator).mean(dim=(-2, -1)).cpu())
    return torch.cat(scores).numpy().astype(np.float64)


def nearest_training_images(queries: np.ndarray, train: pd.DataFrame, train_images: np.ndarray) -> pd.DataFrame:
    """For each query image, its nearest training case by SSIM: nearest_case, nearest_label, nearest_image, ssim."""
    scores = ssim_matrix(queries, train_images)
    nearest = scores.argmax(axis=1)
    return pd.DataFrame({
        "nearest_case": train.case.to_numpy()[nearest],
        "nearest_label": train.label.to_numpy()[nearest],
        "nearest_image": train.image.to_numpy()[nearest],
        "ssim": scores[np.arange(len(queries)), nearest],
    })


def summarise(pairs: pd.DataFrame, reference: pd.DataFrame, threshold: float) -> dict:
    """Summary numbers of the synthetic pairs and of the real test-to-training reference."""
    return {
        "n": len(pairs),
        "median_ssim": float(pairs.ssim.median()),
        "near_copy_threshold": threshold,
        "n_near_copies": int(pairs.near_copy.sum()),
        "share_near_copies": float(pairs.near_copy.mean()),
        "real_vs_real_n": len(reference),
        "real_vs_real_median": float(reference.ssim.median()),
        "real_vs_real_max": float(reference.ssim.max()),
        "real_vs_real_share_at_threshold": float((reference.ssim >= threshold).mean()),
        # Closer to a training image than any distinct real patient is: a data-driven flag that does not
        # depend on the fixed threshold (a memorised slice passed through the VAE may land below it).
        "share_above_real_vs_real_max": float((pairs.ssim > reference.ssim.max()).mean()),
    }


def memorisation_figure(pairs: pd.DataFrame, reference: pd.DataFrame, threshold: float, title: str) -> Figure:
    """Histogram of nearest-neighbour SSIM (synthetic and real test) with the threshold, and the closest pairs."""
    figure = Figure(figsize=(12, 4.4))
    grid = figure.add_gridspec(3, 6, width_ratios=[2.6, 0.05, 1, 1, 1, 1])
    histogram = figure.add_subplot(grid[:, 0])
    bins = np.linspace(min(pairs.ssim.min(), reference.ssim.min(), threshold) - 0.01, 1.0, 40)
    for scores, name in ((pairs.ssim, "synthetic"), (reference.ssim, "real test")):
        histogram.hist(scores, bins=bins, density=True, alpha=0.6, label=f"{name} → nearest train (n={len(scores)})")
    histogram.axvline(threshold, color="black", linestyle="--", label=f"near-copy threshold {threshold:g}")
    histogram.set_xlabel("SSIM with the nearest training image")
    histogram.set_ylabel("density")
    histogram.legend(fontsize=7, loc="upper left")
    closest = pairs.nlargest(PAIRS_SHOWN, "ssim")
    for index, pair in enumerate(closest.itertuples()):
        row, column = divmod(index, 2)
        shown = ((pair.file, f"synthetic, SSIM {pair.ssim:.3f}"), (pair.nearest_image, pair.nearest_case))
        for offset, (file, caption) in enumerate(shown):
            axis = figure.add_subplot(grid[row, 2 + 2 * column + offset])
            axis.imshow(open_image(file, "L"), cmap="gray", vmin=0, vmax=255)
            axis.set_title(caption, fontsize=6)
            axis.axis("off")
    figure.suptitle(
        f"{title}: nearest real training image by SSIM; right: the {PAIRS_SHOWN} closest pairs (synthetic | real)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def run_memorisation_stage(
    manifest_csv: Path,
    metadata_csv: Path,
    settings: MemorisationSettings,
    pairs_csv: Path,
    summary_json: Path,
    figure_png: Path,
    title: str = "synthetic images",
) -> None:
    """Everything the `memorisation` rule does, on a generate manifest (raw images) and the real slice metadata.

    Writes the pairs table (file, label, nearest_case, nearest_label, nearest_image, ssim, near_copy), the summary
    JSON and the figure.
    """
    threshold = float(settings.near_copy_threshold)
    manifest = pd.read_csv(manifest_csv)
    metadata = pd.read_csv(metadata_csv)
    train = metadata[metadata.split == "train"].reset_index(drop=True)
    test = metadata[metadata.split == "test"].reset_index(drop=True)
    train_images = read_gray_stack(train.image)
    nearest = nearest_training_images(read_gray_stack(manifest.file), train, train_images)
    pairs = pd.concat([manifest[["file", "label"]], nearest], axis=1)
    pairs["near_copy"] = pairs.ssim >= threshold
    reference = nearest_training_images(read_gray_stack(test.image), train, train_images)
    pairs.to_csv(pairs_csv, index=False)
    Path(summary_json).write_text(json.dumps(summarise(pairs, reference, threshold), indent=2) + "\n")
    memorisation_figure(pairs, reference, threshold, title).savefig(figure_png, dpi=110)
