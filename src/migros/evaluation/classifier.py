"""Downstream tumour classifier (paper §2.4.1): ResNet-18 trained on the real training slices, alone or with a
synthetic set, evaluated on the real test slices; plus the prompt fidelity of each synthetic set.

- Model: torchvision ResNet-18 with one output logit (tumour), trained with `BCEWithLogitsLoss`. Grayscale
  slices are replicated to 3 channels and normalised with ImageNet statistics (`pretrained: imagenet`) or to
  [-1, 1] (`pretrained: none`).
- ImageNet weights are read only from torchvision's cache (`torch.hub.get_dir()/checkpoints/resnet18-f37072fd.pth`);
  nothing is downloaded and a missing file is an error, never a silent fall-back to random weights.
- Training as in the paper: Adam, lr 1e-4, batch 32, random horizontal flip and Gaussian blur. The training
  budget (`budget`) is either `{epochs: N}` — the paper's design (50 epochs): a condition with more images gets
  more optimizer steps, so every comparison is confounded with the number of updates — or `{steps: N}`: the same
  number of optimizer steps for every condition (the fair comparison; epochs are cut mid-way when the budget is
  reached). Each per-seed row records the optimizer steps taken. All
  images sit in one uint8 tensor, loaded once; augmentation works on tensors (flip on the whole batch, blur per
  image), never through PIL. One seed controls the random initialisation (every layer, or only the new head on
  ImageNet weights), the shuffling and the augmentation, so a run repeats exactly on the CPU.
- BatchNorm running statistics are averaged over the last pass's worth of steps (the last epoch; see
  `average_batchnorm_statistics_from_now`).
- Metrics: every test image's predicted probability is saved (predictions.csv: condition, seed, image, label,
  probability), and the scores are built from that file: ROC AUC over all test predictions pooled (one
  `roc_auc_score` on the whole test set) and accuracy at probability 0.5; over the seeds, the mean with its
  Student-t 95 % interval, and paired comparisons (the same seeds) of every augmented condition with real-only
  and of the augmented conditions with each other, pooled over training replicates where there are several.
- Train on synthetic, test on real (TSTR): for each generated set, a classifier trained on it alone (same budget),
  tested on the real test split — how much of the real task the synthetic set carries by itself.
- Prompt fidelity: the real-only classifier of each seed applied to a method's synthetic images; share of
  tumour-prompt images classified tumour and of healthy-prompt images classified healthy.
- Jobs: one per seed (`run_classifier_seeds`, rule `classifier_seed`), so seeds train side by side, and one that
  gathers them (`summarise_classifier`, rule `classifier`): the intervals and comparisons need every seed.

Settings: `migros.evaluation.classifier_settings.ClassifierSettings`.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from migros.devices import default_device
from migros.evaluation.classifier_settings import REAL_ONLY, TSTR_PREFIX, VAE_RECONSTRUCTION, ClassifierSettings
from migros.evaluation.design import (
    crossed_components, crossed_mean_test, crossed_minimum_detectable_difference, minimum_detectable_difference,
)
from migros.evaluation.replicates import base_method, explicit_replicate, replicated_methods
from migros.evaluation.statistics import TIDY_COLUMNS, paired_comparison, seed_interval
from migros.images import open_image

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAINING_COLUMNS = ["condition", "seed", "n_train_real", "n_train_synthetic", "optimizer_steps"]
PER_SEED_COLUMNS = ["condition", "seed", "auc", "accuracy", "n_train_real", "n_train_synthetic", "optimizer_steps"]
PREDICTION_COLUMNS = ["condition", "seed", "image", "label", "probability"]
FIDELITY_COLUMNS = ["method", "seed", "tumour_recall_on_tumour_prompts", "healthy_recall_on_healthy_prompts"]
PREDICTION_BATCH = 256


@dataclass(frozen=True)
class ImageSet:
    """Grayscale images as one uint8 tensor (N, 1, H, W) and their labels (N,) as floats (1 = tumour)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __add__(self, other: "ImageSet") -> "ImageSet":
        return ImageSet(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]))


def load_image_set(paths: list[str], labels: list[int], image_size: int) -> ImageSet:
    """Read PNGs (grayscale or RGB) once into memory, resized to `image_size` only where they differ from it."""
    if set(labels) - {0, 1}:
        raise ValueError(f"labels must be 0 (healthy) or 1 (tumour), got {sorted(set(labels))}")
    arrays = []
    for path in paths:
        image = open_image(path, "L")
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(image))
    if not arrays:
        raise ValueError("no images to load")
    images = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    return ImageSet(images, torch.tensor(labels, dtype=torch.float32))


def real_slices(metadata_csv: Path, split: str, image_size: int) -> ImageSet:
    """The real slices of one split (`train` or `test`) from the slice stage's metadata.csv."""
    rows = pd.read_csv(metadata_csv).query("split == @split")
    if rows.empty:
        raise ValueError(f"{metadata_csv} has no slices in split {split!r}")
    return load_image_set(rows.image.tolist(), rows.label.astype(int).tolist(), image_size)


def synthetic_images(manifest_csv: Path, image_size: int) -> ImageSet:
    """A synthetic set from a manifest (columns file, label, ...; label = the prompt's label)."""
    rows = pd.read_csv(manifest_csv)
    return load_image_set(rows.file.tolist(), rows.label.astype(int).tolist(), image_size)


def imagenet_weights_path() -> Path:
    """Where torchvision keeps ResNet-18's ImageNet weights: $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth."""
    filename = Path(urlparse(ResNet18_Weights.IMAGENET1K_V1.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


class GrayscaleInput(nn.Module):
    """(B, 1, H, W) in [0, 1] → 3 identical channels, normalised, channels-last (faster convolutions on the CPU)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images.expand(-1, 3, -1, -1) - self.mean) / self.std
        return normalised.contiguous(memory_format=torch.channels_last)


def build_classifier(pretrained: str, seed: int) -> nn.Sequential:
    """GrayscaleInput → ResNet-18 with a one-logit head; `seed` sets the random initialisation."""
    if pretrained == "imagenet":
        weights_path = imagenet_weights_path()
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"classifier pretrained: imagenet needs torchvision's ResNet-18 ImageNet weights at {weights_path}, "
                f"and nothing is downloaded at run time. Copy the file there (fetch {ResNet18_Weights.IMAGENET1K_V1.url}, "
                "or run `python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\"` on a "
                "machine with internet access and copy it from its $TORCH_HOME/hub/checkpoints), set TORCH_HOME to "
                "the folder holding hub/checkpoints, or set the classifier's pretrained: none."
            )
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
        input_layer = GrayscaleInput(IMAGENET_MEAN, IMAGENET_STD)
    elif pretrained == "none":
        state_dict = None
        input_layer = GrayscaleInput((0.5,) * 3, (0.5,) * 3)
    else:
        raise ValueError(f"pretrained must be 'imagenet' or 'none', not {pretrained!r}")
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's global RNG
        torch.manual_seed(seed)
        network = torchvision.models.resnet18(weights=None)
        if state_dict is not None:
            network.load_state_dict(state_dict)
        network.fc = nn.Linear(network.fc.in_features, 1)
    return nn.Sequential(input_layer, network).to(memory_format=torch.channels_last)


def augment(images: torch.Tensor, settings: ClassifierSettings, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip (p 0.5) and Gaussian blur (p `blur_probability`, sigma uniform in `blur_sigma`),
    drawn per image from `generator`; images (B, 1, H, W) float."""
    count = len(images)
    flip = (torch.rand(count, generator=generator) < 0.5).to(images.device)
    images = torch.where(flip.view(-1, 1, 1, 1), TF.horizontal_flip(images), images)
    blur = torch.rand(count, generator=generator) < settings.blur.probability
    sigmas = torch.empty(count).uniform_(*settings.blur.sigma, generator=generator)
    kernel = [settings.blur.kernel_size] * 2
    for index in blur.nonzero().flatten().tolist():
        sigma = float(sigmas[index])
        images[index] = TF.gaussian_blur(images[index], kernel, [sigma, sigma])
    return images


def as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).float().div_(255)


def average_batchnorm_statistics_from_now(model: nn.Module) -> None:
    """Make every BatchNorm layer's running statistics the plain average over the batches still to come.

    The default running estimate (exponential, momentum 0.1) keeps a weight of 0.9^steps on its initial values;
    a short run (the CPU demo: 40 real slices at batch 32 are 2 steps per epoch) would then be evaluated with
    statistics that barely moved from them. Averaging over the last epoch fixes that at no cost and agrees with
    the exponential estimate after long training.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None


def train_classifier(train: ImageSet, settings: ClassifierSettings, seed: int, device: torch.device,
                     description: str = "classifier") -> nn.Sequential:
    """Train a fresh classifier on `train` for `settings.optimizer_steps(len(train))` steps; returns it in eval
    mode. Batches come from a fresh shuffle each pass over the data."""
    model = build_classifier(settings.pretrained, seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_function = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)  # shuffling and augmentation
    images, labels = train.images.to(device), train.labels.to(device)
    total_steps = settings.optimizer_steps(len(train))
    # BatchNorm statistics are averaged over the last pass's worth of steps (the last epoch in the paper's design)
    averaging_from = max(0, total_steps - settings.optimizer_steps_per_pass(len(train)))
    model.train()
    step = 0
    with tqdm(total=total_steps, desc=description, unit="step") as progress:
        while step < total_steps:
            for batch in torch.randperm(len(train), generator=generator).split(settings.batch_size):
                if len(batch) == 1:  # BatchNorm cannot train on one image whose last feature map is 1×1 (≤ 32 px inputs)
                    continue
                if step == averaging_from:
                    average_batchnorm_statistics_from_now(model)
                batch = batch.to(device)
                inputs = augment(as_float(images[batch], device), settings, generator)
                loss = loss_function(model(inputs).squeeze(1), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                progress.update()
                if step == total_steps:
                    break
    return model.eval()


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor, device: torch.device,
                          batch_size: int = PREDICTION_BATCH) -> np.ndarray:
    """Tumour probability of every image (uint8 tensor (N, 1, H, W)), in order, with the model in eval mode."""
    model.eval()
    probabilities = [torch.sigmoid(model(as_float(chunk, device)).squeeze(1)).cpu() for chunk in images.split(batch_size)]
    return torch.cat(probabilities).numpy()


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """ROC AUC over all predictions pooled (not a mean of per-batch AUCs) and accuracy at probability 0.5."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities)
    return {
        "auc": float(roc_auc_score(labels, probabilities)),
        "accuracy": float(np.mean((probabilities >= 0.5) == labels)),
    }


def evaluate(model: nn.Module, test: ImageSet, device: torch.device, batch_size: int = PREDICTION_BATCH) -> dict[str, float]:
    return classification_metrics(test.labels.numpy(), predict_probabilities(model, test.images, device, batch_size))


def scores_from_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """AUC and accuracy of every (condition, seed) from its per-image predictions, in the order they appear."""
    rows = [{"condition": condition, "seed": seed, **classification_metrics(images.label, images.probability)}
            for (condition, seed), images in predictions.groupby(["condition", "seed"], sort=False)]
    return pd.DataFrame(rows, columns=["condition", "seed", "auc", "accuracy"])


def prompt_fidelity(prompt_labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Share of tumour-prompt images classified tumour and of healthy-prompt images classified healthy (NaN
    where a set has no prompt of that label)."""
    prompt_labels = np.asarray(prompt_labels).astype(int)
    predicted_tumour = np.asarray(probabilities) >= 0.5
    tumour, healthy = predicted_tumour[prompt_labels == 1], ~predicted_tumour[prompt_labels == 0]
    return {
        "tumour_recall_on_tumour_prompts": float(tumour.mean()) if tumour.size else float("nan"),
        "healthy_recall_on_healthy_prompts": float(healthy.mean()) if healthy.size else float("nan"),
    }


def condition_method(condition: str) -> str:
    """The method a condition is reported under: `real` → real_only, `real+X` → X, `synthetic_only:X` stays."""
    return REAL_ONLY if condition == "real" else condition.removeprefix("real+")


def tidy_classifier_rows(dataset: str, per_seed: pd.DataFrame, fidelity: pd.DataFrame) -> pd.DataFrame:
    """Mean and Student-t 95 % interval over the seeds of every condition's AUC and accuracy, of the prompt
    fidelity of every method, and the optimizer steps and training-set sizes of each condition. All of these
    scores are proportions, so their intervals are clipped to [0, 1] (a t interval of 5 seeds can reach past)."""

    def proportion_interval(values: pd.Series) -> tuple[float, float, float]:
        mean, lower, upper = seed_interval(values.to_numpy())
        return mean, max(lower, 0.0), min(upper, 1.0)

    rows = []
    for condition, seeds in per_seed.groupby("condition", sort=False):
        method = condition_method(condition)
        for column in ("auc", "accuracy"):
            rows.append((dataset, method, f"classifier_{column}", *proportion_interval(seeds[column]), len(seeds)))
        for column in ("n_train_real", "n_train_synthetic", "optimizer_steps"):
            rows.append((dataset, method, f"classifier_{column}", seeds[column].iloc[0], np.nan, np.nan, len(seeds)))
    names = {"tumour_recall_on_tumour_prompts": "fidelity_tumour_prompts",
             "healthy_recall_on_healthy_prompts": "fidelity_healthy_prompts"}
    for method, seeds in fidelity.groupby("method", sort=False):
        for column, metric in names.items():
            rows.append((dataset, method, metric, *proportion_interval(seeds[column]), len(seeds)))
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


COMPARISON_COLUMNS = ["dataset", "method", "baseline", "metric", "difference", "lower", "upper", "p_value", "n",
                      "distinguishable", "sd", "replicate_sd", "seed_sd", "residual_sd", "minimum_detectable"]


def comparison_pairs(conditions: list[str]) -> list[tuple[str, str]]:
    """Every augmented condition against real-only (and the reconstructions against the originals), and each pair
    of augmented conditions of different methods."""
    augmented = [condition for condition in conditions if condition.startswith("real+")]
    pairs = [(condition, "real") for condition in [*augmented, VAE_RECONSTRUCTION] if condition in conditions]
    return pairs + [(first, second) for index, first in enumerate(augmented) for second in augmented[index + 1:]
                    if base_method(first) != base_method(second)]  # not two replicates of one method


def seed_differences(by_condition: dict[str, pd.DataFrame], condition: str, baseline: str, column: str) -> np.ndarray:
    seeds = by_condition[condition].index.intersection(by_condition[baseline].index)
    return (by_condition[condition].loc[seeds, column] - by_condition[baseline].loc[seeds, column]).to_numpy()


def replicate_comparison(differences: np.ndarray) -> dict:
    """Two conditions over R training replicates × S classifier seeds (`differences`: R × S per-seed differences).
    Every replicate uses the same seeds, so the design is crossed: a seed's effect is shared by every replicate and
    a test over the R replicate means alone would miss it. The two-way random-effects test of the grand mean
    (`migros.evaluation.design.crossed_mean_test`), the components (replicate, seed, residual) and the smallest
    difference that design detects."""
    tested = crossed_mean_test(differences)
    components = crossed_components(differences)
    replicates, seeds = differences.shape
    return {"difference": tested["difference"], "lower": tested["lower"], "upper": tested["upper"],
            "p_value": tested["p_value"], "n": int(differences.size),
            "distinguishable": bool(tested["lower"] > 0 or tested["upper"] < 0),
            "sd": float(np.sqrt(components[1] + components[2])),
            **dict(zip(("replicate_sd", "seed_sd", "residual_sd"), map(float, np.sqrt(components)))),
            "minimum_detectable": crossed_minimum_detectable_difference(*components, replicates, seeds)}


def paired_comparisons(dataset: str, per_seed: pd.DataFrame) -> pd.DataFrame:
    """Every augmented condition against real-only, and each pair of augmented conditions, on the same seeds
    (and the real-only classifier on the VAE reconstructions of the test slices against it on the originals):
    mean difference in AUC and accuracy, its 95 % interval, the paired t-test's p, whether the interval
    excludes 0, the standard deviation of the per-seed differences and the smallest difference the test detects
    with 80 % power at 5 % (two-sided) with that spread and that many seeds: an interval that contains 0 says
    "no effect" only about effects well above that size.

    With training replicates (`real+lora_r4`, `real+lora_r4@1`, ...: `migros.evaluation.replicates`) each
    replicate is compared on its own, named explicitly (`lora_r4@0`), and every pair of methods is also compared
    pooled over the replicates (replicate k of one method beside replicate k of the other; a condition without
    replicates stands beside each) under the methods' own names: `replicate_comparison`."""
    by_condition = {condition: seeds.set_index("seed") for condition, seeds in per_seed.groupby("condition", sort=False)}
    replicated = replicated_methods(by_condition)  # {condition: its replicates' conditions}

    def set_name(condition: str) -> str:
        return condition_method(explicit_replicate(condition, replicated))

    rows = []
    for condition, baseline in comparison_pairs(list(by_condition)):
        seeds = by_condition[condition].index.intersection(by_condition[baseline].index)
        for column in ("auc", "accuracy"):
            result = paired_comparison(by_condition[condition].loc[seeds, column].to_numpy(),
                                       by_condition[baseline].loc[seeds, column].to_numpy())
            rows.append({"dataset": dataset, "method": set_name(condition), "baseline": set_name(baseline),
                         "metric": f"classifier_{column}", **result,
                         "minimum_detectable": minimum_detectable_difference(result["sd"], result["n"])})
    for condition, baseline in comparison_pairs(list(dict.fromkeys(map(base_method, by_condition)))):
        sets = {name: replicated.get(name, [name]) for name in (condition, baseline)}
        replicates = max(map(len, sets.values()))
        if replicates < 2 or min(map(len, sets.values())) not in (1, replicates):
            continue  # one run each, or unequal numbers of replicates: nothing to pair them by
        pairs = list(zip(*(names * (replicates // len(names)) for names in sets.values())))
        for column in ("auc", "accuracy"):
            differences = np.array([seed_differences(by_condition, first, second, column) for first, second in pairs])
            rows.append({"dataset": dataset, "method": condition_method(condition),
                         "baseline": condition_method(baseline), "metric": f"classifier_{column}",
                         **replicate_comparison(differences)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def run_classifier_seeds(
    metadata_csv: Path,
    synthetic_manifests: dict[str, Path],
    settings: ClassifierSettings,
    per_seed_csv: Path,
    fidelity_csv: Path,
    predictions_csv: Path,
    fidelity_manifests: dict[str, Path] | None = None,
    reconstruction_manifest: Path | None = None,
) -> None:
    """The trainings of the `classifier_seed` rule (which passes one seed in `settings`), for each seed:
    conditions `real`, `real+{method}` for every method of `synthetic_manifests`, and `synthetic_only:{method}`
    (TSTR) for every method of `fidelity_manifests` (default: the augmentation methods; only those when
    `settings.train_on_synthetic` is augmentation_methods, none when it is none), whose prompt fidelity the
    real-only classifier of the seed also scores, as it scores the VAE reconstructions of the test slices of
    `reconstruction_manifest` (condition `vae_reconstruction`). Writes each training's size and steps, every
    test image's prediction and the per-seed fidelity. A seed's rows depend on nothing but that seed, so seeds run as separate jobs in parallel."""
    fidelity_manifests = synthetic_manifests if fidelity_manifests is None else fidelity_manifests
    synthetic_only_methods = {"every_generated_set": fidelity_manifests, "augmentation_methods": synthetic_manifests,
                              "none": {}}[settings.train_on_synthetic]
    device = default_device()
    real_train = real_slices(metadata_csv, "train", settings.image_size)
    test = real_slices(metadata_csv, "test", settings.image_size)
    test_files = pd.read_csv(metadata_csv).query("split == 'test'").image.tolist()
    manifests = {**fidelity_manifests, **synthetic_manifests}
    synthetic = {method: synthetic_images(Path(manifest), settings.image_size) for method, manifest in manifests.items()}
    reconstructions = None if reconstruction_manifest is None else synthetic_images(reconstruction_manifest, settings.image_size)
    log.info("device %s; seeds %s; %d real training slices, %d test slices; synthetic: %s; budget: %s", device,
             list(settings.seeds), len(real_train), len(test), {method: len(images) for method, images in synthetic.items()},
             settings.describe_budget())

    rows, fidelity_rows, predictions = [], [], []

    def predict(model: nn.Module, condition: str, seed: int, images: ImageSet, files: list[str]) -> None:
        predictions.append(pd.DataFrame({
            "condition": condition, "seed": seed, "image": files, "label": images.labels.numpy().astype(int),
            "probability": predict_probabilities(model, images.images, device)}, columns=PREDICTION_COLUMNS))

    def train_and_test(condition: str, train: ImageSet, n_real: int, seed: int) -> nn.Sequential:
        model = train_classifier(train, settings, seed, device, description=f"{condition} seed {seed}")
        rows.append({"condition": condition, "seed": seed, "n_train_real": n_real,
                     "n_train_synthetic": len(train) - n_real, "optimizer_steps": settings.optimizer_steps(len(train))})
        predict(model, condition, seed, test, test_files)
        return model

    for seed in settings.seeds:
        model = train_and_test("real", real_train, len(real_train), seed)
        if reconstructions is not None:
            rows.append({**rows[-1], "condition": VAE_RECONSTRUCTION})
            predict(model, VAE_RECONSTRUCTION, seed, reconstructions,
                    pd.read_csv(reconstruction_manifest).file.tolist())
        for method in fidelity_manifests:
            images = synthetic[method]
            probabilities = predict_probabilities(model, images.images, device)
            fidelity_rows.append({"method": method, "seed": seed, **prompt_fidelity(images.labels.numpy(), probabilities)})
        for method in synthetic_manifests:
            train_and_test(f"real+{method}", real_train + synthetic[method], len(real_train), seed)
        for method in synthetic_only_methods:
            train_and_test(f"{TSTR_PREFIX}{method}", synthetic[method], 0, seed)

    write_csv(pd.DataFrame(rows, columns=TRAINING_COLUMNS), per_seed_csv)
    write_csv(pd.concat(predictions, ignore_index=True), predictions_csv)
    write_csv(pd.DataFrame(fidelity_rows, columns=FIDELITY_COLUMNS), fidelity_csv)


def summarise_classifier(
    dataset: str,
    per_seed_csvs: list[Path],
    fidelity_csvs: list[Path],
    prediction_csvs: list[Path],
    per_seed_csv: Path,
    metrics_csv: Path,
    comparisons_csv: Path,
    fidelity_csv: Path,
    predictions_csv: Path,
) -> None:
    """The `classifier` rule: the seed jobs' files gathered in the order given; every (condition, seed)'s AUC and
    accuracy from its test predictions; the tidy rows (mean and interval over the seeds), the paired comparisons,
    and all seeds' rows, predictions and fidelity in one file each."""

    def gathered(paths: list[Path]) -> pd.DataFrame:
        # round_trip: the gathered rows carry exactly the floats the seed jobs computed
        return pd.concat([pd.read_csv(path, float_precision="round_trip") for path in paths], ignore_index=True)

    predictions = gathered(prediction_csvs)
    per_seed = gathered(per_seed_csvs).merge(scores_from_predictions(predictions), on=["condition", "seed"],
                                             how="left", validate="one_to_one")[PER_SEED_COLUMNS]
    fidelity = gathered(fidelity_csvs)
    metrics = tidy_classifier_rows(dataset, per_seed, fidelity)
    comparisons = paired_comparisons(dataset, per_seed)
    for frame, path in ((per_seed, per_seed_csv), (metrics, metrics_csv), (comparisons, comparisons_csv),
                        (fidelity, fidelity_csv), (predictions.assign(dataset=dataset)[["dataset", *PREDICTION_COLUMNS]],
                                                   predictions_csv)):
        write_csv(frame, path)
    log.info("test metrics over %d seeds:\n%s", per_seed.seed.nunique(), metrics.to_string(index=False))
    log.info("paired comparisons:\n%s", comparisons.to_string(index=False))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
