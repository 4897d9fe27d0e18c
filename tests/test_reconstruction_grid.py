"""The autoencoder-ceiling figure: real test slices above their VAE reconstructions, with each lesion's contrast."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from figure_checks import drawn_fraction, image_axes, shown_image
from migros.evaluation.statistics import TIDY_COLUMNS
from migros.images import ImageFileError
from migros.report.reconstruction_grid import (
    LESION_CONTRAST_KEPT, PER_CLASS, contrast_kept, contrast_kept_rows, lesion_contrast, reconstruction_grid_figure,
    reconstruction_pairs, run_reconstruction_grid_stage,
)

SIZE = 48
TISSUE, LESION = 120, 220  # grey levels of the brain disc and of a bright lesion


def test_lesion_contrast_is_the_lesion_against_the_tissue_around_it():
    image = np.zeros((40, 40))
    image[5:35, 5:35] = 0.5  # tissue
    lesion = np.zeros((40, 40), bool)
    lesion[15:20, 15:20] = True
    image[lesion] = 0.9
    image[30:35, 30:35] = 0.0  # a dark hole far from the lesion: outside the ring, so it must not count
    tissue = image > 0.05
    assert lesion_contrast(image, lesion, tissue) == pytest.approx(0.4)
    image[lesion] = 0.2  # hypointense, as prostate cancer on T2
    assert lesion_contrast(image, lesion, tissue) == pytest.approx(-0.3)
    # background in the ring (a lesion at the brain's edge) is not tissue
    edge = np.zeros((40, 40), bool)
    edge[5:8, 15:20] = True
    image[edge] = 0.9
    assert lesion_contrast(image, edge, tissue) == pytest.approx(0.4)
    assert math.isnan(lesion_contrast(image, np.zeros((40, 40), bool), tissue))


def write_slices(tmp_path, count_per_class=PER_CLASS + 2):
    """Slices drawn with PIL (a brain disc, a bright square lesion on tumour slices) and 'reconstructions' that
    keep half of each lesion's contrast (tumour) or equal the original (healthy)."""
    metadata, manifest = [], []
    for index in range(2 * count_per_class):
        label = index % 2
        original = Image.new("L", (SIZE, SIZE), 0)
        draw = ImageDraw.Draw(original)
        draw.ellipse((4, 4, SIZE - 5, SIZE - 5), fill=TISSUE)
        mask = Image.new("L", (SIZE, SIZE), 0)
        reconstruction = original.copy()
        if label:
            box = (14 + index % 5, 16, 22 + index % 5, 24)
            draw.rectangle(box, fill=LESION)
            ImageDraw.Draw(mask).rectangle(box, fill=255)
            ImageDraw.Draw(reconstruction).rectangle(box, fill=(TISSUE + LESION) // 2)
        paths = {name: tmp_path / name / f"{index:03d}.png" for name in ("images", "masks", "reconstructions")}
        for name, image in zip(paths, (original, mask, reconstruction)):
            paths[name].parent.mkdir(exist_ok=True)
            image.save(paths[name])
        metadata.append({"case": f"c{index}", "split": "test", "label": label, "image": str(paths["images"]),
                         "mask": str(paths["masks"])})
        manifest.append({"file": str(paths["reconstructions"]), "label": label, "source_image": str(paths["images"])})
    pd.DataFrame(metadata).to_csv(tmp_path / "metadata.csv", index=False)
    pd.DataFrame(manifest).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv", tmp_path / "metadata.csv"


def test_figure_shows_each_original_above_its_reconstruction_with_the_share_of_contrast_kept(tmp_path):
    manifest_csv, metadata_csv = write_slices(tmp_path)
    pairs = reconstruction_pairs(manifest_csv, metadata_csv)
    tumour = pairs[pairs.label == 1]
    np.testing.assert_allclose(tumour.original_contrast, (LESION - TISSUE) / 255, atol=1e-6)
    np.testing.assert_allclose(tumour.reconstruction_contrast, ((TISSUE + LESION) // 2 - TISSUE) / 255, atol=1e-6)
    assert pairs[pairs.label == 0].original_contrast.isna().all()
    kept, count = contrast_kept(pairs)
    assert count == len(tumour) and kept == pytest.approx(0.5, abs=0.01)

    run_reconstruction_grid_stage("brats", manifest_csv, metadata_csv, tmp_path / "grid.png", tmp_path / "rows.csv",
                                  resamples=200, seed=0)
    assert drawn_fraction(tmp_path / "grid.png") > 0.2
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert list(rows.columns) == TIDY_COLUMNS and rows.metric.tolist() == [LESION_CONTRAST_KEPT]
    assert rows.value.iloc[0] == pytest.approx(0.5, abs=0.01) and rows.n.iloc[0] == len(tumour)
    figure = reconstruction_grid_figure(pairs, "t")
    shown = image_axes(figure)
    assert len(shown) == 4 * PER_CLASS  # rows: tumour original / reconstruction, healthy original / reconstruction
    manifest = pd.read_csv(manifest_csv)
    for row, (label, column) in enumerate(((1, "source_image"), (1, "file"), (0, "source_image"), (0, "file"))):
        files = manifest[manifest.label == label][column].head(PER_CLASS)
        for axis, file in zip(shown[row * PER_CLASS:(row + 1) * PER_CLASS], files):
            np.testing.assert_allclose(shown_image(axis), np.asarray(Image.open(file)) / 255, atol=1e-6)
            assert bool(axis.collections) == bool(label)  # the lesion outline, on tumour slices only
    assert "50%" in figure._suptitle.get_text()


def test_a_reconstruction_of_an_unknown_slice_is_named(tmp_path):
    manifest_csv, metadata_csv = write_slices(tmp_path, count_per_class=1)
    pd.read_csv(metadata_csv).iloc[:1].to_csv(metadata_csv, index=False)
    with pytest.raises(ValueError, match="does not list"):
        reconstruction_pairs(manifest_csv, metadata_csv)


def test_the_share_kept_has_a_bootstrap_interval_over_the_slices():
    rng = np.random.default_rng(0)
    original = rng.uniform(0.1, 0.4, 60)
    pairs = pd.DataFrame({"label": 1, "original_contrast": original,
                          "reconstruction_contrast": original * rng.uniform(0.2, 0.6, 60)})
    pairs.loc[0, "original_contrast"] = 0.001  # no visible lesion in the original: left out
    pairs = pd.concat([pairs, pd.DataFrame({"label": [0], "original_contrast": [np.nan],
                                            "reconstruction_contrast": [np.nan]})], ignore_index=True)
    row = contrast_kept_rows("picai", pairs, resamples=500, seed=0).iloc[0]
    assert row.n == 59 and row.lower < row.value < row.upper
    assert row.lower < 0.4 < row.upper and row.upper - row.lower < 0.2  # the ratios' true median is 0.4
    without = contrast_kept_rows("picai", pairs, resamples=0, seed=0).iloc[0]
    assert without.value == row.value and np.isnan(without.lower) and np.isnan(without.upper)


def test_a_reconstruction_of_another_size_than_its_slice_is_named(tmp_path):
    manifest_csv, metadata_csv = write_slices(tmp_path, count_per_class=1)
    first = pd.read_csv(manifest_csv).file.iloc[0]
    Image.open(first).resize((SIZE // 2, SIZE // 2)).save(first)
    with pytest.raises(ImageFileError, match="expected 24x24"):
        reconstruction_pairs(manifest_csv, metadata_csv)
