"""Intensity handling shared by every dataset loader."""

from pathlib import Path

import numpy as np

from migros.data.records import DatasetError


def require_finite(volume: np.ndarray, path: Path) -> None:
    """Stop on NaN or ±Inf voxels: normalisation would turn them into black pixels that keep their label."""
    bad = volume.size - int(np.count_nonzero(np.isfinite(volume)))
    if bad:
        raise DatasetError(
            f"{path}: {bad} of {volume.size} voxels are not finite (NaN or ±Inf); repair the file or remove the case"
        )


def intensity_window(volume: np.ndarray, lower_percentile: float, upper_percentile: float) -> tuple[np.float64, np.float64]:
    """Percentiles of the volume's non-zero voxels that `apply_window` maps to 0 and 1.

    Percentiles are taken over the whole volume, not per slice, so that a bright lesion in one slice cannot
    rescale that slice differently from the others (which would leak the label into a global statistic).
    """
    foreground = volume[volume > 0]
    if foreground.size == 0:
        raise ValueError("volume has no non-zero voxels to normalise")
    low, high = np.percentile(foreground, [lower_percentile, upper_percentile])
    if high <= low:
        raise ValueError(f"volume intensities are constant between percentiles {lower_percentile} and {upper_percentile}")
    return low, high


def apply_window(image: np.ndarray, window: tuple[np.float64, np.float64]) -> np.ndarray:
    """Clip to the window and scale to [0, 1] in float64, then float32; zero voxels (background of skull-stripped
    scans) stay zero. Applied to the selected slice only, so no normalised copy of the whole volume is made."""
    low, high = window
    scaled = (np.clip(image, low, high) - low) / (high - low)
    return np.where(image > 0, scaled, 0.0).astype(np.float32)
