"""PI-CAI-like prostate phantoms: layout, geometry, label consistency, anatomy, determinism, field-of-view
problems, argument checks, and that global slice statistics do not give the label away."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from migros.data import picai
from migros.data.records import CaseSlice, ExcludedCase
from migros.data.picai import EXPERT_MASKS, GLAND_MASKS, MARKSHEET
from migros.phantoms.prostate import MARKSHEET_COLUMNS, TRUTH_FILE, write_picai_phantoms

SHAPE = (64, 64, 16)
SPACING = (3.0, 3.0, 3.0)  # 192 mm field of view, as the default config's 128 x 1.5 mm
SEED = 5
N_CASES = 80
BLADDER_VOXELS = 100  # a bladder's top is over 1000 mm^2 in a slice


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("picai")
    write_picai_phantoms(root, N_CASES, SHAPE, SPACING, SEED, show_progress=False)
    return root


@pytest.fixture(scope="module")
def truth(root):
    return pd.read_csv(root / TRUTH_FILE)


def read(path):
    return sitk.ReadImage(str(path))


def array(path):
    return sitk.GetArrayFromImage(read(path))


def t2w_path(root, case):
    (path,) = root.glob(f"picai_public_images_fold*/{case.split('_')[0]}/{case}_t2w.mha")
    return path


def test_layout_and_file_names(root, truth):
    assert len(truth) == N_CASES and set(truth.fov_problem) <= {"none", "large_fov", "off_centre"}
    folds = set()
    for case, n_lesions, has_expert in zip(truth.case, truth.n_lesions, truth.has_expert_mask):
        patient, study = (int(part) for part in case.split("_"))
        assert patient >= 10000 and study >= 1000000
        t2w = t2w_path(root, case)
        folds.add(t2w.parent.parent.name)
        assert [path.name for path in t2w.parent.glob(f"{case}_*")] == [t2w.name]  # no unread ADC / HBV scans
        assert (root / GLAND_MASKS / f"{case}.nii.gz").is_file()
        assert (root / EXPERT_MASKS / f"{case}.nii.gz").is_file() == bool(has_expert)
    assert folds == {f"picai_public_images_fold{k}" for k in range(5)}
    assert len(list(root.glob("picai_public_images_fold*/*/*_t2w.mha"))) == N_CASES
    patients = truth.case.str.split("_").str[0]
    assert patients.duplicated().any(), "some patients should have two studies, as in the real release"
    assert (root / MARKSHEET).is_file()
    label_folders = {path.parent.relative_to(root) for path in root.glob("picai_labels/**/*.nii.gz")}
    assert label_folders == {GLAND_MASKS, EXPERT_MASKS}  # no unread AI lesion masks


def test_masks_share_the_t2w_geometry(root, truth):
    for case in truth.case:
        t2w = read(t2w_path(root, case))
        assert t2w.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
        assert t2w.GetPixelID() == sitk.sitkUInt16
        masks = [root / GLAND_MASKS, root / EXPERT_MASKS]
        for path in (folder / f"{case}.nii.gz" for folder in masks):
            if path.is_file():
                mask = read(path)
                assert mask.GetPixelID() == sitk.sitkUInt8
                assert mask.GetSize() == t2w.GetSize()
                for name in ("GetSpacing", "GetOrigin", "GetDirection"):
                    np.testing.assert_allclose(getattr(mask, name)(), getattr(t2w, name)(), atol=1e-6)


def test_lesion_labels_agree_with_truth_and_marksheet(root, truth):
    sheet = pd.read_csv(root / MARKSHEET)
    assert tuple(sheet.columns) == MARKSHEET_COLUMNS
    sheet.index = [f"{p}_{s}" for p, s in zip(sheet.patient_id, sheet.study_id)]
    positives = truth[truth.n_lesions > 0]
    assert 0.25 < len(positives) / len(truth) < 0.65
    assert (~positives.has_expert_mask).any() and positives.has_expert_mask.any()
    assert truth[truth.n_lesions == 0].has_expert_mask.all()
    for case, n_lesions, has_expert in zip(truth.case, truth.n_lesions, truth.has_expert_mask):
        row = sheet.loc[case]
        assert row.case_csPCa == ("YES" if n_lesions else "NO")
        assert (row.case_ISUP >= 2) == (n_lesions > 0)
        if has_expert:
            lesions = array(root / EXPERT_MASKS / f"{case}.nii.gz")
            grades = set(np.unique(lesions)) - {0}
            assert grades <= {2, 3, 4, 5}
            if n_lesions == 0:
                assert not lesions.any()
            else:
                assert max(grades) == row.case_ISUP and len(grades) <= n_lesions  # two lesions may share a grade
                gland = array(root / GLAND_MASKS / f"{case}.nii.gz")
                assert gland[lesions > 0].all(), "lesions lie inside the gland"


def test_anterior_is_small_y_and_posterior_is_large_y(root, truth):
    """The bladder (largest bright-fluid region above mid-gland) lies in front of the gland; the bright peripheral zone
    lies in the back of most glands (lesions, hyperplasia and partial volume at 3 mm voxels can hide it)."""
    checked, bright_back = 0, []
    window = int(60 / SPACING[0])  # voxels: the pelvis around the gland, not the (bright) subcutaneous fat
    for case in truth[truth.fov_problem == "none"].case:
        t2w = array(t2w_path(root, case)).astype(np.float32)
        gland = array(root / GLAND_MASKS / f"{case}.nii.gz") > 0
        z, y, x = (np.mean(axis) for axis in np.nonzero(gland))
        middle = int(round(z))
        rows = np.arange(gland.shape[1])[:, None]
        front, back = gland[middle] & (rows < y), gland[middle] & (rows > y)
        bright_back.append(t2w[middle][back].mean() > t2w[middle][front].mean())
        top, left = max(int(y) - window, 0), max(int(x) - window, 0)
        upper = t2w[middle + 3 :, top : int(y) + window, left : int(x) + window]
        components, n_components = ndimage.label(upper > 0.85 * np.percentile(upper, 99.9))
        sizes = np.bincount(components.ravel())[1:]
        if n_components and sizes.max() >= BLADDER_VOXELS:  # smaller bright regions: seminal vesicles, veins
            bladder = components == np.argmax(sizes) + 1
            assert top + np.nonzero(bladder)[1].mean() < y, case
            checked += 1
    assert checked > N_CASES // 3
    assert np.mean(bright_back) > 0.75


def test_cases_are_deterministic_and_do_not_depend_on_the_number_of_cases(tmp_path):
    for name, n_cases, seed in (("a", 5, 11), ("b", 3, 11), ("c", 3, 12)):
        write_picai_phantoms(tmp_path / name, n_cases, SHAPE, SPACING, seed, show_progress=False)
    truth = pd.read_csv(tmp_path / "a" / TRUTH_FILE)
    pd.testing.assert_frame_equal(truth.head(3), pd.read_csv(tmp_path / "b" / TRUTH_FILE))
    for case in truth.case.head(3):
        np.testing.assert_array_equal(array(t2w_path(tmp_path / "a", case)), array(t2w_path(tmp_path / "b", case)))
        gland = [array(tmp_path / run / GLAND_MASKS / f"{case}.nii.gz") for run in "ab"]
        np.testing.assert_array_equal(*gland)
    sheets = [pd.read_csv(tmp_path / run / MARKSHEET) for run in "ab"]
    pd.testing.assert_frame_equal(sheets[0].head(3), sheets[1])
    first = truth.case[0]
    other = pd.read_csv(tmp_path / "c" / TRUTH_FILE).case[0]
    assert not np.array_equal(array(t2w_path(tmp_path / "a", first)), array(t2w_path(tmp_path / "c", other)))


def test_field_of_view_problems_are_present_and_detectable(root, truth):
    assert {"large_fov", "off_centre"} <= set(truth.fov_problem)
    for case, problem in zip(truth.case, truth.fov_problem):
        t2w = read(t2w_path(root, case))
        gland = array(root / GLAND_MASKS / f"{case}.nii.gz") > 0
        border = gland[:, [0, -1], :].any() or gland[:, :, [0, -1]].any()
        in_plane = np.array(t2w.GetSpacing()[:2])
        if problem == "large_fov":
            assert in_plane == pytest.approx(1.8 * np.array(SPACING[:2]), abs=0.01)
        else:
            assert in_plane == pytest.approx(SPACING[:2])
        if problem == "off_centre":
            assert gland[SHAPE[2] // 2].any() and border, f"{case}: the field of view should cut the gland"
        else:
            assert not border, f"{case}: the gland should be fully inside the field of view"


def test_the_real_loader_keeps_good_cases_and_excludes_fov_problems(root, truth):
    problems = dict(zip(truth.case, truth.fov_problem))
    expert = dict(zip(truth.case, truth.has_expert_mask))
    lesions = dict(zip(truth.case, truth.n_lesions))
    for files in picai.find_cases(root):
        result = picai.load_case(files, (0.5, 99.5), (150.0, 260.0))
        if problems[files.case] == "none" and expert[files.case]:
            assert isinstance(result, CaseSlice), getattr(result, "reason", None)
            assert result.label == int(lesions[files.case] > 0)
        else:
            assert isinstance(result, ExcludedCase)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n_cases": 0}, "n_cases"),
        ({"n_cases": 2.5}, "n_cases"),
        ({"seed": -1}, "seed"),
        ({"shape": (64, 64)}, "shape"),
        ({"shape": (16, 64, 16)}, "shape"),
        ({"shape": (64.0, 64, 16)}, "shape"),
        ({"spacing": (3.0, 3.0)}, "spacing"),
        ({"spacing": (3.0, -3.0, 3.0)}, "spacing"),
        ({"spacing": (3.0, float("nan"), 3.0)}, "spacing"),
        ({"spacing": (0.5, 0.5, 3.0)}, "field of view"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, arguments, message):
    call = {"root": tmp_path, "n_cases": 2, "shape": SHAPE, "spacing": SPACING, "seed": 0, "show_progress": False}
    with pytest.raises(ValueError, match=message):
        write_picai_phantoms(**{**call, **arguments})
    assert not any(tmp_path.iterdir())
