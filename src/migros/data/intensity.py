"""Intensity handling shared by every dataset loader."""

import numpy as np


def robust_normalise(volume: np.ndarray, lower_percentile: float, upper_percentile: float) -> np.ndarray:
    """Map a volume to [0, 1] by clipping at percentiles of its non-zero voxels.

    Percentiles are taken over the whole volume, not per slice, so that a bright lesion in one slice cannot
    rescale that slice differently from the others (which would leak the label into a global statistic).
    Zero voxels (background of skull-stripped scans) stay zero.
    """
    foreground = volume[volume > 0]
    if foreground.size == 0:
        raise ValueError("volume has no non-zero voxels to normalise")
    low, high = np.percentile(foreground, [lower_percentile, upper_percentile])
    if high <= low:
        raise ValueError(f"volume intensities are constant between percentiles {lower_percentile} and {upper_percentile}")
    scaled = (np.clip(volume, low, high) - low) / (high - low)
    return np.where(volume > 0, scaled, 0.0).astype(np.float32)
