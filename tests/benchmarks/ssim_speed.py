"""Benchmark (not a test): the memorisation stage's batched SSIM against scikit-image's, pair by pair, on the
demo's sizes (1000 synthetic images against 40 training slices of 64 px; a subset for scikit-image).

    python tests/benchmarks/ssim_speed.py [--queries 1000] [--references 40] [--size 64] [--threads 1]
"""

import argparse
import time

import numpy as np
import torch
from skimage.metrics import structural_similarity

from migros.evaluation.memorisation import ssim_matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--references", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skimage-queries", type=int, default=50, help="queries scored by scikit-image (it is slow)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, (arguments.queries, arguments.size, arguments.size), dtype=np.uint8)
    references = rng.integers(0, 256, (arguments.references, arguments.size, arguments.size), dtype=np.uint8)

    start = time.perf_counter()
    batched = ssim_matrix(queries, references, device=torch.device("cpu"))
    batched_seconds = time.perf_counter() - start

    subset = queries[: arguments.skimage_queries]
    start = time.perf_counter()
    pairwise = np.array([[structural_similarity(query, reference, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=255)
                          for reference in references] for query in subset])
    skimage_seconds = (time.perf_counter() - start) * arguments.queries / len(subset)

    pairs = arguments.queries * arguments.references
    print(f"{pairs} pairs of {arguments.size} px, {arguments.threads} thread(s): batched {batched_seconds:.2f} s, "
          f"scikit-image {skimage_seconds:.1f} s (extrapolated from {len(subset)} queries), "
          f"{skimage_seconds / batched_seconds:.0f}× faster; "
          f"largest difference {np.abs(batched[: len(subset)] - pairwise).max():.1e}")


if __name__ == "__main__":
    main()
