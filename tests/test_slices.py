import numpy as np
import pandas as pd
import pytest
from conftest import brats_case

from migros.data.records import CaseSlice, DatasetError
from migros.data.slices import balanced_split, pad_to_square, resize_cases, run_slice_stage


def make_slices(n_positive, n_negative):
    blank = np.zeros((4, 4), np.float32)
    return [
        CaseSlice(f"case{i:03d}", int(i < n_positive), 0, blank, blank > 0, "x")
        for i in range(n_positive + n_negative)
    ]


def test_split_is_balanced_disjoint_and_seeded():
    slices = make_slices(30, 40)
    split = balanced_split(slices, n_train=20, n_test=16, seed=3)
    labels = {item.case: item.label for item in slices}
    for name, size in (("train", 20), ("test", 16)):
        chosen = [case for case, part in split.items() if part == name]
        assert len(chosen) == size
        assert sum(labels[case] for case in chosen) == size // 2
    assert list(split.values()).count("unused") == 70 - 36
    assert balanced_split(slices, 20, 16, seed=3) == split
    assert balanced_split(slices, 20, 16, seed=4) != split


def test_split_with_too_few_cases_says_how_many_there_are():
    with pytest.raises(DatasetError, match="needs 10 positive and 10 negative .* has 8 positive and 40 negative"):
        balanced_split(make_slices(8, 40), n_train=12, n_test=8, seed=0)


def test_resizing_keeps_masks_binary_and_aspect_ratio():
    image = np.zeros((20, 40), np.float32)
    image[:, 10:30] = 1.0
    square = pad_to_square(image)
    assert square.shape == (40, 40) and square[10:30, 10:30].all() and not square[:10].any()
    mask = image > 0
    [resized], excluded = resize_cases([CaseSlice("a", 1, 0, image, mask, "x")], 16)
    assert not excluded
    assert resized.image.shape == (16, 16) and resized.mask.dtype == bool
    assert set(np.unique(resized.mask)) == {False, True}


def test_lesion_that_vanishes_at_the_output_size_is_excluded_not_relabelled():
    image = np.ones((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[5, 5] = True
    kept, excluded = resize_cases([CaseSlice("tiny", 1, 0, image, mask, "x")], 8)
    assert kept == [] and excluded[0].reason == "lesion smaller than one pixel at 8 px"


def test_slice_stage_writes_images_masks_and_metadata(tmp_path):
    root = tmp_path / "brats"
    for i in range(12):
        brats_case(root, f"BraTS2021_{i:05d}", tumour_slice=4 if i % 2 else 0)
    metadata, excluded = run_slice_stage(
        "brats", root, image_size=16, intensity_percentiles=(0.5, 99.5), n_train=4, n_test=4, seed=0,
        images_dir=tmp_path / "out/images", masks_dir=tmp_path / "out/masks",
    )
    assert len(metadata) == 12 and excluded.empty
    assert metadata.split.value_counts().to_dict() == {"unused": 4, "train": 4, "test": 4}
    positive = metadata[metadata.label == 1].iloc[0]
    assert positive.lesion_area_px > 0 and positive.bbox_row_min <= positive.bbox_row_max
    assert pd.isna(metadata[metadata.label == 0].iloc[0].bbox_row_min)
    assert len(list((tmp_path / "out/images").glob("*.png"))) == 12
