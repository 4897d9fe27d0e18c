"""Background removal: a textured bright head on a dark noisy background, with known geometry."""

import hashlib
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from migros.evaluation.postprocess import PostprocessSettings, foreground_mask, remove_background, run_postprocess_stage

# The settings recommended for BraTS-like FLAIR slices at 64 and 224 px.
SETTINGS = PostprocessSettings.from_config({
    "enabled": True,
    "working_size": 64,
    "blur_sigma": 1.0,
    "canny_low": 30,
    "canny_high": 90,
    "closing_size": 5,
    "border_tissue_level": 20,
    "min_foreground_fraction": 0.1,
})


def head_phantom(size: int, seed: int = 0, half_axes=(0.36, 0.28), with_artefact: bool = True) -> tuple[np.ndarray, ...]:
    """RGB uint8 image of a textured ellipse (dark 'ventricles' inside) on dark noise, and the ellipse mask.

    With `with_artefact`, a smooth blob sits in a background corner, like the hallucinated background patterns
    of fine-tuned models.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size] / size
    ellipse = ((rows - 0.5) / half_axes[0]) ** 2 + ((columns - 0.5) / half_axes[1]) ** 2 <= 1
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 40)
    texture *= 25 / texture.std()
    ventricles = ((rows - 0.48) / 0.1) ** 2 + ((np.abs(columns - 0.5) - 0.06) / 0.03) ** 2 <= 1
    image = np.where(ellipse, 150 + texture, 0.0)
    image[ventricles] = 40
    if with_artefact:
        image += 70 * np.exp(-(((rows - 0.08) ** 2 + (columns - 0.9) ** 2) / 0.003))
    image = np.clip(image + np.abs(rng.normal(0, 3, (size, size))), 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2), ellipse


@pytest.mark.parametrize("size", [64, 224])
def test_background_set_to_zero_and_head_kept_whole(size):
    rgb, ellipse = head_phantom(size)
    processed, fraction, found_outline = remove_background(Image.fromarray(rgb), SETTINGS)
    result = np.asarray(processed)
    assert processed.mode == "L" and found_outline
    # A margin of two working-size pixels allows for the edge position and the resized mask's boundary.
    far_background = ndimage.distance_transform_edt(~ellipse) > 2 * size / SETTINGS.working_size
    assert (result[far_background] == 0).all()
    mask = foreground_mask(np.asarray(Image.fromarray(rgb).convert("L")), SETTINGS)
    assert (mask & ellipse).sum() / ellipse.sum() >= 0.95
    assert (mask & ellipse).sum() / (mask | ellipse).sum() >= 0.9
    assert fraction == pytest.approx(mask.mean())
    # Inside the head, including the dark ventricles, nothing is changed.
    inner = ndimage.binary_erosion(ellipse, iterations=3)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    assert (result[inner] == gray[inner]).all()


def test_body_cut_by_the_field_of_view_is_kept_whole():
    """A pelvis wider than the image (as in PI-CAI) has no edge at the image border; it must not be lost."""
    rgb, body = head_phantom(96, half_axes=(0.3, 0.7), with_artefact=False)
    mask = foreground_mask(np.asarray(Image.fromarray(rgb).convert("L")), SETTINGS)
    assert (mask & body).sum() / (mask | body).sum() >= 0.9


def test_soft_edges_of_a_large_image_are_found():
    """A blurry 224 px head (soft boundaries, as generated images have) is found like a sharp 64 px one."""
    rgb, ellipse = head_phantom(224, with_artefact=False)
    blurry = ndimage.gaussian_filter(np.asarray(Image.fromarray(rgb).convert("L")).astype(float), 7).astype(np.uint8)
    mask = foreground_mask(blurry, SETTINGS)
    assert (mask & ellipse).sum() / (mask | ellipse).sum() >= 0.9


def test_open_outline_keeps_the_image_unchanged():
    """Edges that enclose nothing (here a thin open arc) give a tiny mask; erasing the rest would destroy a head."""
    rows, columns = np.mgrid[0:64, 0:64]
    arc = np.where((np.abs(np.hypot(rows - 32, columns - 32) - 20) < 0.8) & (columns < 32), 200, 0).astype(np.uint8)
    unguarded = foreground_mask(arc, replace(SETTINGS, min_foreground_fraction=0.0))
    assert unguarded.mean() < SETTINGS.min_foreground_fraction
    processed, fraction, found_outline = remove_background(Image.fromarray(arc), SETTINGS)
    assert not found_outline and fraction == 1.0
    assert np.array_equal(np.asarray(processed), arc)


def test_disabled_only_converts_to_grayscale():
    rgb, _ = head_phantom(64)
    rgb[..., 0] = 255 - rgb[..., 0]  # distinct channels, so that the grayscale conversion is visible
    processed, fraction, found_outline = remove_background(Image.fromarray(rgb), replace(SETTINGS, enabled=False))
    assert processed.mode == "L" and fraction == 1.0 and found_outline
    assert np.array_equal(np.asarray(processed), np.asarray(Image.fromarray(rgb).convert("L")))


@pytest.mark.parametrize("value", [0, 90])
def test_blank_image_is_returned_unchanged(value):
    blank = Image.fromarray(np.full((64, 64), value, np.uint8))
    processed, fraction, found_outline = remove_background(blank, SETTINGS)
    assert not found_outline and fraction == 1.0
    assert np.array_equal(np.asarray(processed), np.asarray(blank))


def write_manifest(folder, images: list[np.ndarray]) -> pd.DataFrame:
    folder.mkdir(parents=True)
    rows = []
    for index, image in enumerate(images):
        path = folder / f"{index:05d}.png"
        Image.fromarray(image).save(path)
        rows.append({"file": str(path), "prompt": "Brain MRI Flair, healthy", "label": index % 2, "seed": index})
    return pd.DataFrame(rows)


def test_stage_writes_images_and_manifest(tmp_path, caplog):
    images = [head_phantom(64, seed)[0] for seed in range(3)] + [np.zeros((64, 64, 3), np.uint8)]
    manifest = write_manifest(tmp_path / "raw", images)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    raw_digests = [hashlib.sha256(open(file, "rb").read()).hexdigest() for file in manifest.file]

    with caplog.at_level(logging.WARNING):
        run_postprocess_stage(tmp_path / "manifest.csv", SETTINGS, tmp_path / "processed", tmp_path / "out.csv")

    output = pd.read_csv(tmp_path / "out.csv")
    assert list(output.columns) == [*manifest.columns, "raw_file", "foreground_fraction"]
    assert output.raw_file.tolist() == manifest.file.tolist()
    assert output.file.tolist() == [str(tmp_path / "processed" / f"{index:05d}.png") for index in range(4)]
    assert output[["prompt", "label", "seed"]].equals(manifest[["prompt", "label", "seed"]])
    for row in output.itertuples():
        assert Image.open(row.file).mode == "L"
    assert (output.foreground_fraction[:3].between(0.2, 0.5)).all() and output.foreground_fraction[3] == 1.0
    assert "1 of 4 images had no closed outline" in caplog.text
    assert [hashlib.sha256(open(file, "rb").read()).hexdigest() for file in manifest.file] == raw_digests


def test_stage_refuses_to_overwrite_raw_images(tmp_path):
    manifest = write_manifest(tmp_path / "raw", [head_phantom(64)[0]])
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="raw images"):
        run_postprocess_stage(tmp_path / "manifest.csv", SETTINGS, tmp_path / "raw", tmp_path / "out.csv")
