"""Downstream tumour classifier (paper §2.4.1): ResNet-18 trained on the real training slices, alone or with a
synthetic set, evaluated on the real test slices; plus the prompt fidelity of each synthetic set.

- Model: torchvision ResNet-18 with one output logit (tumour), trained with `BCEWithLogitsLoss`. Grayscale
  slices are replicated to 3 channels and normalised with ImageNet statistics (`pretrained: imagenet`) or to
  [-1, 1] (`pretrained: none`).
- ImageNet weights are read only from torchvision's cache (`torch.hub.get_dir()/checkpoints/resnet18-f37072fd.pth`);
  nothing is downloaded and a missing file is an error, never a silent fall-back to random weights.
- Training as in the paper: Adam, lr 1e-4, batch 32, 50 epochs, random horizontal flip and Gaussian blur. All
  images sit in one uint8 tensor, loaded once; augmentation works on tensors (flip on the whole batch, blur per
  image), never through PIL. One seed controls the random initialisation (every layer, or only the new head on
  ImageNet weights), the shuffling and the augmentation, so a run repeats exactly on the CPU.
- BatchNorm running statistics are averaged over the last epoch (see `average_batchnorm_statistics_from_now`).
- Metrics: ROC AUC over all test predictions pooled (one `roc_auc_score` on the whole test set) and accuracy at
  probability 0.5.
- Prompt fidelity: the real-only classifier of each seed applied to a method's synthetic images; share of
  tumour-prompt images classified tumour and of healthy-prompt images classified healthy.

Settings (one dict, see `ClassifierSettings.from_dict`): `pretrained` (imagenet | none), `epochs`, `batch_size`,
`learning_rate`, `seeds`, `image_size`, `blur` {`kernel_size`, `sigma`: [min, max], `probability`}.
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
from migros.images import open_image

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PER_SEED_COLUMNS = ["condition", "seed", "auc", "accuracy", "n_train_real", "n_train_synthetic", "epochs"]
FIDELITY_METRICS = ["tumour_recall_on_tumour_prompts", "healthy_recall_on_healthy_prompts"]
PREDICTION_BATCH = 256


@dataclass(frozen=True)
class ClassifierSettings:
    pretrained: str
    epochs: int
    batch_size: int
    learning_rate: float
    seeds: tuple[int, ...]
    image_size: int
    blur_kernel_size: int
    blur_sigma: tuple[float, float]
    blur_probability: float

    @classmethod
    def from_dict(cls, settings: dict) -> "ClassifierSettings":
        """The config's `classifier` dict; `blur` is a nested dict {kernel_size, sigma: [min, max], probability}."""
        if settings["pretrained"] not in ("imagenet", "none"):
            raise ValueError(f"classifier pretrained must be 'imagenet' or 'none', not {settings['pretrained']!r}")
        blur = settings["blur"]
        return cls(
            pretrained=settings["pretrained"], epochs=int(settings["epochs"]), batch_size=int(settings["batch_size"]),
            learning_rate=float(settings["learning_rate"]), seeds=tuple(int(seed) for seed in settings["seeds"]),
            image_size=int(settings["image_size"]), blur_kernel_size=int(blur["kernel_size"]),
            blur_sigma=(float(blur["sigma"][0]), float(blur["sigma"][1])), blur_probability=float(blur["probability"]),
        )


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
    blur = torch.rand(count, generator=generator) < settings.blur_probability
    sigmas = torch.empty(count).uniform_(*settings.blur_sigma, generator=generator)
    kernel = [settings.blur_kernel_size] * 2
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
    """Train a fresh classifier on `train`; returns it in eval mode."""
    model = build_classifier(settings.pretrained, seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_function = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)  # shuffling and augmentation
    images, labels = train.images.to(device), train.labels.to(device)
    model.train()
    for epoch in tqdm(range(settings.epochs), desc=description, unit="epoch"):
        if epoch == settings.epochs - 1:
            average_batchnorm_statistics_from_now(model)
        for batch in torch.randperm(len(train), generator=generator).split(settings.batch_size):
            if len(batch) == 1:  # BatchNorm cannot train on one image whose last feature map is 1×1 (≤ 32 px inputs)
                continue
            batch = batch.to(device)
            inputs = augment(as_float(images[batch], device), settings, generator)
            loss = loss_function(model(inputs).squeeze(1), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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


def summarise(per_seed: pd.DataFrame, group: str, metrics: list[str]) -> pd.DataFrame:
    """Long table: group, metric, mean, std (ddof=1, NaN for one seed), n (seeds)."""
    long = per_seed.melt(id_vars=[group], value_vars=metrics, var_name="metric")
    summary = long.groupby([group, "metric"], sort=False)["value"].agg(mean="mean", std=lambda v: v.std(ddof=1), n="count")
    return summary.reset_index()


def run_classifier_stage(
    metadata_csv: Path,
    synthetic_manifests: dict[str, Path],
    settings: dict,
    per_seed_csv: Path,
    summary_csv: Path,
    fidelity_csv: Path,
    fidelity_manifests: dict[str, Path] | None = None,
) -> None:
    """Everything the `classifier` rule does for one dataset: conditions `real` and `real+{method}` for every
    method of `synthetic_manifests`, each seed. The real-only classifier of each seed also scores the prompt
    fidelity of every method of `fidelity_manifests` (default: the augmentation methods)."""
    config = ClassifierSettings.from_dict(settings)
    fidelity_manifests = synthetic_manifests if fidelity_manifests is None else fidelity_manifests
    device = default_device()
    real_train = real_slices(metadata_csv, "train", config.image_size)
    test = real_slices(metadata_csv, "test", config.image_size)
    manifests = {**fidelity_manifests, **synthetic_manifests}
    synthetic = {method: synthetic_images(Path(manifest), config.image_size) for method, manifest in manifests.items()}
    log.info("device %s; %d real training slices, %d test slices; synthetic: %s", device, len(real_train), len(test),
             {method: len(images) for method, images in synthetic.items()})

    rows, fidelity_rows = [], []
    for seed in config.seeds:
        model = train_classifier(real_train, config, seed, device, description=f"real seed {seed}")
        rows.append({"condition": "real", "seed": seed, **evaluate(model, test, device),
                     "n_train_real": len(real_train), "n_train_synthetic": 0, "epochs": config.epochs})
        for method in fidelity_manifests:
            images = synthetic[method]
            probabilities = predict_probabilities(model, images.images, device)
            fidelity_rows.append({"method": method, "seed": seed, **prompt_fidelity(images.labels.numpy(), probabilities)})
        for method in synthetic_manifests:
            images = synthetic[method]
            model = train_classifier(real_train + images, config, seed, device, description=f"real+{method} seed {seed}")
            rows.append({"condition": f"real+{method}", "seed": seed, **evaluate(model, test, device),
                         "n_train_real": len(real_train), "n_train_synthetic": len(images), "epochs": config.epochs})

    per_seed = pd.DataFrame(rows, columns=PER_SEED_COLUMNS)
    for path in (per_seed_csv, summary_csv, fidelity_csv):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    per_seed.to_csv(per_seed_csv, index=False)
    summary = summarise(per_seed, "condition", ["auc", "accuracy"])
    summary.to_csv(summary_csv, index=False)
    log.info("test metrics over %d seeds:\n%s", len(config.seeds), summary.to_string(index=False))
    pd.DataFrame(fidelity_rows, columns=["method", "seed", *FIDELITY_METRICS]).to_csv(fidelity_csv, index=False)
