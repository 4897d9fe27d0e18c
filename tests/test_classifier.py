"""The downstream tumour classifier: pooled metrics, seeded reproducibility, learning on an easy task, offline
ImageNet weights, prompt fidelity and the stage's CSVs. Real ResNet-18s on 32 px images, a few steps each."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from migros.evaluation.classifier import (
    ClassifierSettings, ImageSet, build_classifier, evaluate, imagenet_weights_path, predict_probabilities,
    prompt_fidelity, real_slices, run_classifier_seeds, summarise_classifier, train_classifier,
)
from migros.evaluation.statistics import TIDY_COLUMNS
from migros.settings import SettingsError

SIZE = 32
CPU = torch.device("cpu")
SETTINGS = {"pretrained": "none", "budget": {"epochs": 3}, "batch_size": 16, "learning_rate": 1e-4, "seeds": [0, 1],
            "image_size": SIZE, "blur": {"kernel_size": 3, "sigma": [0.1, 1.0], "probability": 0.5},
            "train_on_synthetic": "every_generated_set"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blob_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy grey squares; the tumour ones (every other image) carry a bright 6 px blob at a random place."""
    rng = np.random.default_rng(seed)
    images = rng.normal(60, 15, (count, SIZE, SIZE))
    labels = np.arange(count) % 2
    for image, label in zip(images, labels):
        if label:
            row, col = rng.integers(4, SIZE - 10, 2)
            image[row : row + 6, col : col + 6] += 150
    return np.clip(images, 0, 255).astype(np.uint8), labels


def blob_set(count: int, seed: int) -> ImageSet:
    images, labels = blob_images(count, seed)
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.tensor(labels, dtype=torch.float32))


def write_pngs(folder, images: np.ndarray, prefix: str, rgb: bool = False) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{prefix}{index:03d}.png"
        Image.fromarray(np.repeat(image[..., None], 3, axis=2) if rgb else image).save(path)
        paths.append(str(path))
    return paths


class MeanIntensity(nn.Module):
    """A fixed 'classifier' whose tumour probability is the image's mean intensity in [0, 1]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.logit(images.mean(dim=(1, 2, 3))).unsqueeze(1)


def test_auc_is_pooled_over_the_test_set_not_a_mean_of_batch_aucs():
    intensities = [26, 51, 179, 204]  # per batch of two, the tumour image is the brighter: batch AUCs are 1
    labels = np.array([0, 1, 0, 1])
    test = ImageSet(torch.tensor(intensities, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous(),
                    torch.tensor(labels, dtype=torch.float32))
    model = MeanIntensity()
    probabilities = predict_probabilities(model, test.images, CPU, batch_size=2)
    metrics = evaluate(model, test, CPU, batch_size=2)
    batch_mean = np.mean([roc_auc_score(labels[i : i + 2], probabilities[i : i + 2]) for i in (0, 2)])
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, probabilities)) == pytest.approx(0.75)
    assert batch_mean == 1.0
    assert metrics["accuracy"] == 0.5  # 0.1 and 0.2 → healthy, 0.7 and 0.8 → tumour


def test_a_seed_reproduces_its_run_exactly_and_another_seed_differs():
    settings = ClassifierSettings.from_config({**SETTINGS, "budget": {"epochs": 2}})
    train, test = blob_set(24, seed=1), blob_set(16, seed=2)
    runs = [predict_probabilities(train_classifier(train, settings, seed, CPU), test.images, CPU) for seed in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_learns_an_easy_task_in_a_few_epochs_with_the_papers_learning_rate():
    settings = ClassifierSettings.from_config(SETTINGS)
    model = train_classifier(blob_set(64, seed=5), settings, seed=0, device=CPU)
    assert evaluate(model, blob_set(40, seed=6), CPU)["auc"] > 0.9
    # BatchNorm statistics are the average over the last epoch's 4 batches, not an estimate still near its start.
    batchnorms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    assert all(module.momentum is None and module.num_batches_tracked == 4 for module in batchnorms)


@pytest.mark.parametrize(("budget", "train_size", "expected_steps", "averaged_batches"), [
    ({"epochs": 3}, 40, 9, 3),   # 40 images at batch 16: batches of 16, 16, 8 per epoch
    ({"epochs": 2}, 33, 4, 2),   # 33 = 16 + 16 + 1: the batch of one image is skipped
    ({"steps": 5}, 40, 5, 3),    # a step budget cuts the second pass after two of its three batches
    ({"steps": 5}, 200, 5, 5),   # ... or stops within the first pass over a large set
])
def test_the_budget_sets_the_optimizer_steps_of_every_training_set(budget, train_size, expected_steps, averaged_batches,
                                                                   monkeypatch):
    settings = ClassifierSettings.from_config({**SETTINGS, "budget": budget})
    assert settings.optimizer_steps(train_size) == expected_steps
    steps = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda optimizer, *args, **kwargs: steps.append(1))
    model = train_classifier(blob_set(train_size, seed=3), settings, seed=0, device=CPU)
    assert len(steps) == expected_steps
    # BatchNorm statistics are averaged over the last pass's worth of batches (the last epoch in the paper's design)
    batchnorms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    assert {int(module.num_batches_tracked) for module in batchnorms} == {averaged_batches}


def test_classifier_settings_name_their_section_on_an_unknown_or_missing_key():
    settings = ClassifierSettings.from_config(SETTINGS)
    assert (settings.budget_unit, settings.budget, settings.blur.sigma) == ("epochs", 3, (0.1, 1.0))
    with pytest.raises(SettingsError, match=r"classifier: unknown key\(s\) \['epochs'\]"):
        ClassifierSettings.from_config({**SETTINGS, "epochs": 3})
    with pytest.raises(SettingsError, match=r"classifier.blur: missing key\(s\) \['probability'\]"):
        ClassifierSettings.from_config({**SETTINGS, "blur": {"kernel_size": 3, "sigma": [0.1, 1.0]}})


def test_imagenet_without_the_cached_weights_names_the_file_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_path() == expected
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        build_classifier("imagenet", seed=0)
    assert not expected.exists()


def test_imagenet_loads_the_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.resnet18(weights=None).state_dict()
    imagenet_weights_path().parent.mkdir(parents=True)
    torch.save(weights, imagenet_weights_path())
    network = build_classifier("imagenet", seed=0)[1]
    loaded = network.state_dict()
    for name, tensor in weights.items():
        if not name.startswith("fc."):
            torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0)
    assert network.fc.out_features == 1


def test_prompt_fidelity_on_a_constructed_case():
    prompt_labels = np.array([1, 1, 1, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.5, 0.2, 0.1, 0.49, 0.7, 0.3])
    fidelity = prompt_fidelity(prompt_labels, probabilities)
    assert fidelity["tumour_recall_on_tumour_prompts"] == pytest.approx(2 / 3)
    assert fidelity["healthy_recall_on_healthy_prompts"] == pytest.approx(3 / 4)


def write_stage_inputs(tmp_path) -> tuple:
    """Real slices (16 train, 8 test) with metadata.csv, and two synthetic sets (10 images each) with manifests."""
    real_images, real_labels = blob_images(24, seed=7)
    paths = write_pngs(tmp_path / "slices", real_images, "case")
    split = ["train"] * 16 + ["test"] * 8
    metadata = tmp_path / "metadata.csv"
    pd.DataFrame({"case": range(24), "split": split, "label": real_labels, "image": paths}).to_csv(metadata, index=False)
    manifests = {}
    for method, seed in (("selora", 8), ("lora", 9)):
        images, labels = blob_images(10, seed)
        files = write_pngs(tmp_path / method, images, "", rgb=True)
        manifests[method] = tmp_path / f"{method}.csv"
        pd.DataFrame({"file": files, "prompt": "p", "label": labels, "seed": range(10)}).to_csv(manifests[method], index=False)
    return metadata, real_images, manifests


def run_seed_jobs(tmp_path, metadata, manifests, seeds) -> dict[int, tuple]:
    """What the `classifier_seed` rule does, once per seed (each job gets its one seed):
    {seed: (rows, fidelity, predictions)}."""
    outputs = {}
    for seed in seeds:
        folder = tmp_path / f"seed_{seed}"
        settings = ClassifierSettings.from_config({**SETTINGS, "budget": {"steps": 2}, "seeds": [seed]})
        outputs[seed] = (folder / "per_seed.csv", folder / "prompt_fidelity.csv", folder / "predictions.csv")
        run_classifier_seeds(metadata, {"selora": manifests["selora"]}, settings, *outputs[seed],
                             fidelity_manifests=manifests)
    return outputs


def test_stage_writes_per_seed_tidy_comparison_and_fidelity_rows(tmp_path):
    metadata, real_images, manifests = write_stage_inputs(tmp_path)
    seed_outputs = run_seed_jobs(tmp_path, metadata, manifests, seeds=(0, 1))
    outputs = {name: tmp_path / "classifier" / f"{name}.csv"
               for name in ("per_seed", "metrics", "comparisons", "fidelity", "predictions")}

    summarise_classifier("brats", *map(list, zip(*seed_outputs.values())), **{
        f"{name}_csv": path for name, path in outputs.items()})

    per_seed = pd.read_csv(outputs["per_seed"])
    assert list(per_seed.columns) == ["condition", "seed", "auc", "accuracy", "n_train_real", "n_train_synthetic",
                                      "optimizer_steps"]
    conditions = ["real", "real+selora", "synthetic_only:selora", "synthetic_only:lora"]
    assert sorted(zip(per_seed.condition, per_seed.seed)) == sorted((c, s) for c in conditions for s in (0, 1))
    assert set(per_seed.optimizer_steps) == {2}  # the same budget for every condition
    assert dict(zip(per_seed.condition, per_seed.n_train_real)) == {
        "real": 16, "real+selora": 16, "synthetic_only:selora": 0, "synthetic_only:lora": 0}
    assert dict(zip(per_seed.condition, per_seed.n_train_synthetic)) == {
        "real": 0, "real+selora": 10, "synthetic_only:selora": 10, "synthetic_only:lora": 10}
    assert per_seed[["auc", "accuracy"]].apply(lambda column: column.between(0, 1)).all().all()

    # every test image of every condition and seed, and the scores are those of these predictions
    predictions = pd.read_csv(outputs["predictions"])
    assert list(predictions.columns) == ["dataset", "condition", "seed", "image", "label", "probability"]
    assert predictions.groupby(["condition", "seed"]).size().eq(8).all() and len(predictions) == 8 * len(per_seed)
    test_rows = pd.read_csv(metadata).query("split == 'test'")
    first = predictions[(predictions.condition == "real+selora") & (predictions.seed == 1)]
    assert first.image.tolist() == test_rows.image.tolist() and first.label.tolist() == test_rows.label.tolist()
    scored = per_seed.set_index(["condition", "seed"]).loc[("real+selora", 1)]
    assert scored.auc == roc_auc_score(first.label, first.probability)
    assert scored.accuracy == np.mean((first.probability >= 0.5) == first.label)

    metrics = pd.read_csv(outputs["metrics"])
    assert list(metrics.columns) == TIDY_COLUMNS and set(metrics.dataset) == {"brats"}
    auc = metrics[metrics.metric == "classifier_auc"].set_index("method")
    assert sorted(auc.index) == ["real_only", "selora", "synthetic_only:lora", "synthetic_only:selora"]
    seeds_auc = per_seed.query("condition == 'real'").auc
    real = auc.loc["real_only"]
    assert real.value == pytest.approx(seeds_auc.mean()) and real.n == 2
    assert real.lower <= real.value <= real.upper or seeds_auc.nunique() == 1
    steps = metrics[metrics.metric == "classifier_optimizer_steps"]
    assert set(steps.value) == {2}
    fidelity_rows = metrics[metrics.metric.str.startswith("fidelity_")]
    assert sorted(zip(fidelity_rows.method, fidelity_rows.metric)) == [
        (method, metric) for method in ("lora", "selora") for metric in ("fidelity_healthy_prompts", "fidelity_tumour_prompts")]

    comparisons = pd.read_csv(outputs["comparisons"])
    assert sorted(zip(comparisons.method, comparisons.baseline, comparisons.metric)) == [
        ("selora", "real_only", "classifier_accuracy"), ("selora", "real_only", "classifier_auc")]
    paired = comparisons[comparisons.metric == "classifier_auc"].iloc[0]
    by_condition = per_seed.set_index(["condition", "seed"]).auc
    assert paired.difference == pytest.approx((by_condition["real+selora"] - by_condition["real"]).mean())

    fidelity = pd.read_csv(outputs["fidelity"])
    assert list(fidelity.columns) == ["method", "seed", "tumour_recall_on_tumour_prompts", "healthy_recall_on_healthy_prompts"]
    assert sorted(zip(fidelity.method, fidelity.seed)) == [("lora", 0), ("lora", 1), ("selora", 0), ("selora", 1)]

    # The stage reads the real slices back exactly as written.
    train = real_slices(metadata, "train", SIZE)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), real_images[:16])


def test_a_seeds_job_gives_the_same_rows_alone_as_in_a_run_of_all_seeds(tmp_path):
    """The stage runs as one job per seed: a seed's rows must not depend on which other seeds ran before it in the
    same process, and the gathered file carries the seed jobs' floats exactly."""
    metadata, _, manifests = write_stage_inputs(tmp_path)
    alone = run_seed_jobs(tmp_path / "alone", metadata, manifests, seeds=(1,))[1]
    together = tmp_path / "together"
    settings = ClassifierSettings.from_config({**SETTINGS, "budget": {"steps": 2}, "seeds": [0, 1]})
    together_csvs = [together / name for name in ("per_seed.csv", "prompt_fidelity.csv", "predictions.csv")]
    run_classifier_seeds(metadata, {"selora": manifests["selora"]}, settings, *together_csvs,
                         fidelity_manifests=manifests)
    for alone_csv, together_csv in zip(alone, together_csvs):
        seed_one = pd.read_csv(together_csv).query("seed == 1").reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.read_csv(alone_csv), seed_one, check_exact=True)

    outputs = [tmp_path / f"{name}.csv" for name in ("per_seed", "metrics", "comparisons", "fidelity", "predictions")]
    summarise_classifier("brats", *([path] for path in alone), *outputs)
    gathered = pd.read_csv(outputs[4], float_precision="round_trip").drop(columns="dataset")
    pd.testing.assert_frame_equal(gathered, pd.read_csv(alone[2], float_precision="round_trip"), check_exact=True)


@pytest.mark.parametrize("train_on_synthetic, synthetic_only", [
    ("every_generated_set", ["synthetic_only:lora", "synthetic_only:selora"]),
    ("augmentation_methods", ["synthetic_only:selora"]),
    ("none", []),
])
def test_train_on_synthetic_chooses_the_sets_with_a_synthetic_only_classifier(tmp_path, train_on_synthetic,
                                                                              synthetic_only):
    """Prompt fidelity is scored on every set whichever sets also train a classifier alone."""
    metadata, _, manifests = write_stage_inputs(tmp_path)
    settings = ClassifierSettings.from_config({**SETTINGS, "budget": {"steps": 1}, "seeds": [0],
                                               "train_on_synthetic": train_on_synthetic})
    run_classifier_seeds(metadata, {"selora": manifests["selora"]}, settings, tmp_path / "per_seed.csv",
                         tmp_path / "prompt_fidelity.csv", tmp_path / "predictions.csv", fidelity_manifests=manifests)
    conditions = pd.read_csv(tmp_path / "per_seed.csv").condition
    assert sorted(conditions) == sorted(["real", "real+selora", *synthetic_only])
    assert sorted(pd.read_csv(tmp_path / "prompt_fidelity.csv").method) == ["lora", "selora"]
