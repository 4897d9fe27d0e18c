"""Memorisation check: SSIM against known values, planted copies of training images are found."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from skimage.metrics import structural_similarity

from figure_checks import drawn_fraction, image_axes, shown_image
from migros.evaluation.memorisation import (
    C1, MemorisationSettings, memorisation_figure, nearest_training_images, run_memorisation_stage, ssim_matrix,
)

SETTINGS = MemorisationSettings.from_config({"near_copy_threshold": 0.95})


def slice_phantom(seed: int, size: int = 48) -> np.ndarray:
    """A textured bright ellipse of random shape and position on a dark background, uint8 grayscale."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size] / size
    centre = 0.5 + rng.uniform(-0.08, 0.08, 2)
    half_axes = rng.uniform(0.25, 0.4, 2)
    ellipse = ((rows - centre[0]) / half_axes[0]) ** 2 + ((columns - centre[1]) / half_axes[1]) ** 2 <= 1
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.5)
    image = np.where(ellipse, 140 + 40 * texture / texture.std(), 0) + np.abs(rng.normal(0, 2, (size, size)))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_ssim_equals_scikit_images():
    rng = np.random.default_rng(1)
    images = np.stack([slice_phantom(seed) for seed in range(3)])
    contrast_changed = np.clip(0.6 * images[0].astype(float) + 50 + rng.normal(0, 3, images[0].shape), 0, 255)
    references = np.stack([images[0], contrast_changed.astype(np.uint8), images[1], images[2]])
    scores = ssim_matrix(images, references, device=None)
    expected = np.array([[structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                data_range=255) for b in references] for a in images])
    assert scores.shape == (3, 4)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6) and scores[1, 2] == pytest.approx(1.0, abs=1e-6)
    assert 0.3 < scores[0, 1] < 0.95  # a contrast change is similar, but not a copy


def test_ssim_of_uniform_images_has_the_closed_form():
    """Flat images: no structure term, SSIM = (2 m1 m2 + C1) / (m1² + m2² + C1)."""
    flat = np.full((1, 32, 32), 100, np.uint8)
    brighter = np.full((1, 32, 32), 140, np.uint8)
    expected = (2 * 100 * 140 + C1) / (100**2 + 140**2 + C1)
    assert ssim_matrix(flat, brighter)[0, 0] == pytest.approx(expected, rel=1e-6)


def test_ssim_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="sizes differ"):
        ssim_matrix(np.zeros((1, 32, 32)), np.zeros((1, 48, 48)))


def write_png(path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(path)


@pytest.fixture
def planted(tmp_path):
    """12 training and 6 test slices; 8 synthetic images: an exact RGB copy of train case 3, a noised copy of
    train case 7 and 6 distinct new slices."""
    metadata = pd.DataFrame([
        {"case": f"case{index:02d}", "split": "train" if index < 12 else "test", "label": index % 2,
         "image": write_png(tmp_path / "slices" / f"case{index:02d}.png", slice_phantom(index))}
        for index in range(18)
    ])
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    noise = np.random.default_rng(0).normal(0, 1, (48, 48))
    exact_rgb_copy = np.repeat(slice_phantom(3)[..., None], 3, axis=2)
    synthetic = [exact_rgb_copy, np.clip(slice_phantom(7) + noise, 0, 255).astype(np.uint8)]
    synthetic += [slice_phantom(100 + seed) for seed in range(6)]
    manifest = pd.DataFrame([
        {"file": write_png(tmp_path / "generated" / f"{index:05d}.png", image), "prompt": "p", "label": index % 2,
         "seed": index}
        for index, image in enumerate(synthetic)
    ])
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_planted_copies_are_flagged_with_their_case(planted):
    run_memorisation_stage(
        planted / "manifest.csv", planted / "metadata.csv", SETTINGS,
        planted / "pairs.csv", planted / "summary.json", planted / "memorisation.png", title="test",
    )
    pairs = pd.read_csv(planted / "pairs.csv")
    summary = json.loads((planted / "summary.json").read_text())

    assert list(pairs.columns) == [
        "file", "label", "nearest_case", "nearest_label", "nearest_image", "ssim", "near_copy",
    ]
    assert pairs.nearest_case[0] == "case03" and pairs.ssim[0] == pytest.approx(1.0, abs=1e-6)
    assert pairs.nearest_case[1] == "case07" and 0.95 <= pairs.ssim[1] < 1.0
    assert pairs.near_copy.tolist() == [True, True] + [False] * 6
    assert (pairs.ssim[2:] < 0.8).all()
    assert set(pairs.nearest_case) <= {f"case{index:02d}" for index in range(12)}  # training cases only

    assert summary["n"] == 8 and summary["near_copy_threshold"] == 0.95
    assert summary["n_near_copies"] == 2 and summary["share_near_copies"] == pytest.approx(pairs.near_copy.mean())
    assert summary["median_ssim"] == pytest.approx(pairs.ssim.median())
    assert summary["real_vs_real_n"] == 6 and summary["real_vs_real_median"] < 0.8
    assert summary["real_vs_real_share_at_threshold"] == 0.0
    assert summary["share_above_real_vs_real_max"] == pytest.approx((pairs.ssim > summary["real_vs_real_max"]).mean())
    assert drawn_fraction(planted / "memorisation.png") > 0.1


def test_memorisation_figure_shows_both_histograms_the_threshold_and_the_closest_pairs(planted):
    run_memorisation_stage(planted / "manifest.csv", planted / "metadata.csv", SETTINGS,
                           planted / "pairs.csv", planted / "summary.json", planted / "memorisation.png")
    pairs = pd.read_csv(planted / "pairs.csv")
    metadata = pd.read_csv(planted / "metadata.csv")
    train, test = (metadata[metadata.split == split].reset_index(drop=True) for split in ("train", "test"))
    stack = lambda files: np.stack([np.asarray(Image.open(file).convert("L")) for file in files])  # noqa: E731
    reference = nearest_training_images(stack(test.image), train, stack(train.image))
    figure = memorisation_figure(pairs, reference, 0.95, "t")

    histogram = figure.axes[0]
    heights = [patch.get_height() for patch in histogram.patches]
    assert len(heights) == 2 * 39  # synthetic and real-test histograms over the same 40 bin edges
    edges = np.linspace(min(pairs.ssim.min(), reference.ssim.min(), 0.95) - 0.01, 1.0, 40)
    np.testing.assert_allclose(heights[:39], np.histogram(pairs.ssim, edges, density=True)[0])
    np.testing.assert_allclose(heights[39:], np.histogram(reference.ssim, edges, density=True)[0])
    assert [line.get_xdata()[0] for line in histogram.lines] == [0.95]

    shown = image_axes(figure)
    assert len(shown) == 2 * 6  # the 6 closest pairs, synthetic | nearest real
    closest = pairs.nlargest(6, "ssim")
    np.testing.assert_array_equal(shown_image(shown[0]), np.asarray(Image.open(closest.file.iloc[0]).convert("L")))
    np.testing.assert_array_equal(shown_image(shown[1]), stack([closest.nearest_image.iloc[0]])[0])
