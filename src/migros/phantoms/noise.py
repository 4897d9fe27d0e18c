"""Scanner noise shared by the phantoms."""

import numpy as np


def rician_magnitude(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation `sigma`, as in a magnitude MR image.

    Draws the real part's noise, then the imaginary part's, each of the signal's shape, in float32.
    """
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.hypot(real, sigma * rng.standard_normal(signal.shape, dtype=np.float32))
