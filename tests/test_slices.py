import numpy as np
import pandas as pd
import pytest
from conftest import brats_case, picai_case, write_marksheet

from migros.data import picai
from figure_checks import drawn_fraction, image_axes, shown_image
from migros.data.overview import EXAMPLES_PER_CLASS, overview_figure, summary_html, write_overview
from migros.images import read_gray
from migros.data.records import CaseSlice, DatasetError, ExcludedCase
from migros.data.slices import SliceSettings, balanced_split, pad_to_square, resize_case, run_slice_stage
from migros.settings import SettingsError


def slice_settings(loader, image_size, train, test, field_of_view_mm):
    return SliceSettings.from_config({
        "loader": loader, "image_size": image_size, "intensity_percentiles": [0.5, 99.5],
        "field_of_view_mm": field_of_view_mm, "split": {"train": train, "test": test, "reserve": 0, "seed": 0},
    })


def test_slice_settings_name_their_section_on_an_unknown_or_missing_key():
    section = {"loader": "brats", "image_size": 16, "intensity_percentiles": [0.5, 99.5], "field_of_view_mm": None,
               "split": {"train": 4, "test": 4, "reserve": 0, "seed": 0}}
    assert SliceSettings.from_config(section).intensity_percentiles == (0.5, 99.5)
    with pytest.raises(SettingsError, match=r"datasets.<name> \(slices\): unknown key\(s\) \['prompts'\]"):
        SliceSettings.from_config({**section, "prompts": {}})
    with pytest.raises(SettingsError, match=r"datasets.<name> \(slices\).split: missing key\(s\) \['seed'\]"):
        SliceSettings.from_config({**section, "split": {"train": 4, "test": 4, "reserve": 0}})


def single_study_cases(n_positive, n_negative):
    names = [f"case{i:03d}" for i in range(n_positive + n_negative)]
    return pd.DataFrame({"case": names, "patient": names, "label": [int(i < n_positive) for i in range(len(names))]})


def per_case_split(cases, n_train, n_test, seed):
    """The split before patients were grouped: negatives then positives drawn per case."""
    rng = np.random.default_rng(seed)
    split = dict.fromkeys(cases.case, "unused")
    for label in (0, 1):
        chosen = rng.permutation(sorted(cases.case[cases.label == label]))[: n_train // 2 + n_test // 2]
        split.update(dict.fromkeys(chosen[: n_train // 2], "train") | dict.fromkeys(chosen[n_train // 2 :], "test"))
    return split


def test_split_is_balanced_disjoint_and_seeded():
    cases = single_study_cases(30, 40)
    split = balanced_split(cases, n_train=20, n_test=16, seed=3)
    labels = dict(zip(cases.case, cases.label))
    for name, size in (("train", 20), ("test", 16)):
        chosen = [case for case, part in split.items() if part == name]
        assert len(chosen) == size
        assert sum(labels[case] for case in chosen) == size // 2
    assert list(split.values()).count("unused") == 70 - 36
    assert balanced_split(cases, 20, 16, seed=3) == split
    assert balanced_split(cases, 20, 16, seed=4) != split


def test_with_one_study_per_patient_the_split_is_the_per_case_draw():
    """BraTS and the brain demo keep the split they had before patients were grouped."""
    cases = single_study_cases(25, 31)
    for seed in range(5):
        assert balanced_split(cases, 16, 20, seed) == per_case_split(cases, 16, 20, seed)


def test_studies_of_one_patient_share_a_split():
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(60):
        n_studies = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
        for study in range(n_studies):
            label = int(patient % 2) if patient < 50 else study % 2  # patients 50-59 are mixed (when multi-study)
            rows.append({"case": f"{patient}_{study}", "patient": str(patient), "label": label})
    cases = pd.DataFrame(rows)
    assert cases.groupby("patient").label.nunique().max() == 2  # some patients have a positive and a negative study
    for seed in range(10):
        split = cases.assign(split=cases.case.map(balanced_split(cases, 24, 16, seed)))
        assert split.groupby("patient").split.nunique().max() == 1
        counts = split.groupby(["split", "label"]).size()
        assert counts["train"].to_dict() == {0: 12, 1: 12} and counts["test"].to_dict() == {0: 8, 1: 8}


def test_the_reserve_is_balanced_and_shares_no_patient_with_train_or_test():
    """Multi-study patients, some with a positive and a negative study: each patient lies in one split only."""
    rng = np.random.default_rng(1)
    rows = []
    for patient in range(120):
        for study in range(1 + int(rng.random() < 0.4) + int(rng.random() < 0.15)):
            label = int(patient % 2) if patient < 90 else study % 2
            rows.append({"case": f"{patient}_{study}", "patient": f"p{patient}", "label": label})
    cases = pd.DataFrame(rows)
    for seed in range(10):
        split = cases.assign(split=cases.case.map(balanced_split(cases, 24, 16, seed, n_reserve=30)))
        patients = {name: set(split.patient[split.split == name]) for name in ("train", "test", "reserve")}
        assert not (patients["reserve"] & patients["train"]) and not (patients["reserve"] & patients["test"])
        assert not patients["train"] & patients["test"]
        counts = split.groupby(["split", "label"]).size()
        assert counts["reserve"].to_dict() == {0: 15, 1: 15}
        assert counts["train"].to_dict() == {0: 12, 1: 12} and counts["test"].to_dict() == {0: 8, 1: 8}
    # train and test are drawn as without a reserve: adding the control moves no training or test case
    without = balanced_split(cases, 24, 16, 3)
    with_reserve = balanced_split(cases, 24, 16, 3, n_reserve=30)
    assert {case for case, part in without.items() if part in ("train", "test")} == {
        case for case, part in with_reserve.items() if part in ("train", "test")}


def test_a_reserve_larger_than_the_patients_allow_says_how_many_there_are():
    with pytest.raises(DatasetError, match="20 train \\+ 10 test \\+ 30 reserve cases needs 30 positive"):
        balanced_split(single_study_cases(29, 40), n_train=20, n_test=10, seed=0, n_reserve=30)


def test_a_split_that_whole_patients_cannot_fill_says_why():
    cases = pd.DataFrame({"case": ["a_1", "a_2", "b_1", "c_1"], "patient": ["a", "a", "b", "c"], "label": [0, 0, 1, 1]})
    with pytest.raises(DatasetError, match="never divided between splits"):
        balanced_split(cases, n_train=2, n_test=2, seed=0)


def test_split_with_too_few_cases_says_how_many_there_are():
    with pytest.raises(DatasetError, match="needs 10 positive and 10 negative .* has 8 positive and 40 negative"):
        balanced_split(single_study_cases(8, 40), n_train=12, n_test=8, seed=0)


def test_resizing_keeps_masks_binary_and_aspect_ratio():
    image = np.zeros((20, 40), np.float32)
    image[:, 10:30] = 1.0
    square = pad_to_square(image)
    assert square.shape == (40, 40) and square[10:30, 10:30].all() and not square[:10].any()
    mask = image > 0
    resized = resize_case(CaseSlice("a", "a", 1, 0, image, mask, "x"), 16)
    assert resized.image.shape == (16, 16) and resized.mask.dtype == bool
    assert set(np.unique(resized.mask)) == {False, True}


def test_lesion_that_vanishes_at_the_output_size_is_excluded_not_relabelled():
    image = np.ones((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[5, 5] = True
    excluded = resize_case(CaseSlice("tiny", "tiny", 1, 0, image, mask, "x"), 8)
    assert isinstance(excluded, ExcludedCase) and excluded.reason == "lesion smaller than one pixel at 8 px"


def test_slice_stage_writes_images_masks_and_metadata(tmp_path):
    root = tmp_path / "brats"
    for i in range(12):
        brats_case(root, f"BraTS2021_{i:05d}", tumour_slice=4 if i % 2 else 0)
    metadata, excluded, summary = run_slice_stage(
        slice_settings("brats", image_size=16, train=4, test=4, field_of_view_mm=None),
        root, tmp_path / "out/images", tmp_path / "out/masks",
    )
    assert len(metadata) == 12 and excluded.empty
    assert metadata.split.value_counts().to_dict() == {"unused": 4, "train": 4, "test": 4}
    assert (metadata.patient == metadata.case).all()
    positive = metadata[metadata.label == 1].iloc[0]
    assert positive.lesion_area_px > 0 and positive.bbox_row_min <= positive.bbox_row_max
    assert pd.isna(metadata[metadata.label == 0].iloc[0].bbox_row_min)
    assert len(list((tmp_path / "out/images").glob("*.png"))) == 12
    assert "  train: 4 patients, 4 studies (2 tumour, 2 healthy)" in summary
    assert not any("CHECK SKIPPED" in line for line in summary)


def test_overview_shows_training_slices_with_lesion_outlines_and_the_split_counts(tmp_path):
    root = tmp_path / "brats"
    for i in range(20):
        brats_case(root, f"BraTS2021_{i:05d}", tumour_slice=4 if i % 2 else 0)
    metadata, excluded, _ = run_slice_stage(
        slice_settings("brats", image_size=32, train=16, test=4, field_of_view_mm=None),
        root, tmp_path / "out/images", tmp_path / "out/masks",
    )
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    excluded.to_csv(tmp_path / "excluded.csv", index=False)
    write_overview(tmp_path / "metadata.csv", tmp_path / "excluded.csv", tmp_path / "overview.png",
                   tmp_path / "summary.html", "brats")
    assert drawn_fraction(tmp_path / "overview.png") > 0.1

    figure = overview_figure(metadata, "brats")
    shown = image_axes(figure)
    train = metadata[metadata.split == "train"]
    expected = [*train[train.label == 1].image.head(EXAMPLES_PER_CLASS), *train[train.label == 0].image.head(EXAMPLES_PER_CLASS)]
    assert len(shown) == len(expected) == 2 * EXAMPLES_PER_CLASS
    for axis, image in zip(shown, expected):
        np.testing.assert_array_equal(shown_image(axis), read_gray(image))
    outlined = [bool(axis.collections) for axis in shown]  # the lesion contour, on tumour slices only
    assert outlined == [True] * EXAMPLES_PER_CLASS + [False] * EXAMPLES_PER_CLASS
    bars = figure.axes[EXAMPLES_PER_CLASS].patches  # cases per split: healthy bars, then tumour bars
    counts = pd.crosstab(metadata.label, metadata.split)  # splits in alphabetical order, as the bars
    assert [bar.get_height() for bar in bars] == [counts.loc[label, split] for label in (0, 1) for split in counts.columns]
    assert counts.loc[1, "train"] == 8


def test_picai_stage_splits_by_patient_and_reports_skipped_checks(tmp_path):
    """Two studies of each patient; no whole-gland masks and no case_csPCa: the cases are kept and every skipped
    check is in the rule's summary, the metadata and the report's dataset summary."""
    root = tmp_path / "picai"
    cases = []
    for patient in range(10000, 10010):
        for repeat in range(2):
            lesions = {5: 3} if patient % 2 else None
            cases.append(picai_case(root, patient, lesions, study=2000000 + 10 * patient + repeat, gland_mask=False))
    write_marksheet(root, dict.fromkeys(cases, False), drop_columns=["case_csPCa"])
    metadata, excluded, summary = run_slice_stage(
        slice_settings("picai", image_size=16, train=4, test=4, field_of_view_mm=[150.0, 260.0]),
        root, tmp_path / "out/images", tmp_path / "out/masks",
    )
    assert excluded.empty and len(metadata) == 20
    assert metadata.groupby("patient").split.nunique().max() == 1
    assert metadata.groupby("patient").case.size().eq(2).all()
    assert "  train: 2 patients, 4 studies (2 tumour, 2 healthy)" in summary
    for check in (picai.NO_GLAND_MASK, picai.NO_CSPCA_COLUMN):
        assert f"  CHECK SKIPPED for 20 usable cases: {check}" in summary
        assert metadata.skipped_checks.str.contains(check, regex=False).all()
    html = summary_html(metadata, excluded, "picai")
    assert "Patients and studies per split" in html and picai.NO_GLAND_MASK in html and picai.NO_CSPCA_COLUMN in html


def test_summary_says_when_no_check_was_skipped(tmp_path):
    root = tmp_path / "picai"
    cases = {picai_case(root, 10000 + i, {5: 3} if i % 2 else None): bool(i % 2) for i in range(8)}
    write_marksheet(root, cases)
    metadata, excluded, summary = run_slice_stage(
        slice_settings("picai", image_size=16, train=4, test=4, field_of_view_mm=[150.0, 260.0]),
        root, tmp_path / "out/images", tmp_path / "out/masks",
    )
    assert not any("CHECK SKIPPED" in line for line in summary)
    assert "none: every check ran on every usable case" in summary_html(metadata, excluded, "picai")


def test_every_loader_is_one_module_with_the_dataset_interface():
    """A dataset is a module in migros.data.DATASETS with find_cases and load_case(case, percentiles, fov_mm);
    an unknown loader is named."""
    import inspect

    from migros.data import DATASETS, dataset_module

    for loader, module in DATASETS.items():
        assert dataset_module(loader) is module
        assert list(inspect.signature(module.load_case).parameters)[1:] == ["intensity_percentiles", "fov_mm"]
        assert callable(module.find_cases)
    with pytest.raises(ValueError, match=r"unknown loader 'brats2023'.*\['brats', 'picai'\]"):
        dataset_module("brats2023")
