import numpy as np
import SimpleITK as sitk
from conftest import picai_case, write_marksheet

from migros.data import picai
from migros.data.records import CaseSlice, ExcludedCase

PERCENTILES = (0.5, 99.5)
FOV_MM = (150.0, 260.0)  # conftest cases: 40 px × 4.5 mm = 180 mm


def load_all(root):
    return {files.case: picai.load_case(files, PERCENTILES, FOV_MM) for files in picai.find_cases(root)}


def test_positive_slice_has_the_largest_lesion_and_negative_is_the_median(tmp_root):
    positive = picai_case(tmp_root, 10000, lesion_slices={3: 2, 7: 5, 8: 3})
    negative = picai_case(tmp_root, 10001)
    write_marksheet(tmp_root, {positive: True, negative: False})
    results = load_all(tmp_root)
    assert results[positive].label == 1 and results[positive].slice_index == 7
    assert results[positive].mask.sum() == 100
    assert results[negative].label == 0 and results[negative].slice_index == 12 // 2


def test_display_is_radiological(tmp_root):
    """LPS array [z, y, x]: small y is anterior (top), small x is patient right (image left)."""
    case = picai_case(tmp_root, 10000)
    path = next(tmp_root.glob("picai_public_images_fold0/*/*_t2w.mha"))
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    volume[:, 0, 0] = 5000.0
    # store the same anatomy with a flipped x axis (direction -1): the loader must undo it
    flipped = sitk.GetImageFromArray(volume[:, :, ::-1].copy())
    flipped.SetSpacing((4.5, 4.5, 3.0))
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    flipped.SetOrigin((4.5 * 39, 0, 0))
    sitk.WriteImage(flipped, str(path))
    for mask_dir in (picai.EXPERT_MASKS, picai.GLAND_MASKS):  # masks on the same grid as the T2W
        mask_path = tmp_root / mask_dir / f"{case}.nii.gz"
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))[:, :, ::-1].copy()
        image = sitk.GetImageFromArray(mask)
        image.CopyInformation(flipped)
        sitk.WriteImage(image, str(mask_path))
    write_marksheet(tmp_root, {case: False})
    image = load_all(tmp_root)[case].image
    assert np.unravel_index(np.argmax(image), image.shape) == (0, 0)


def test_exclusions_carry_their_reasons(tmp_root):
    cases = {
        picai_case(tmp_root, 10000, lesion_slices={5: 3}, expert_mask=False): True,
        picai_case(tmp_root, 10001, expert_mask=False): False,
        picai_case(tmp_root, 10002, spacing=(8.0, 8.0, 3.0)): False,
        picai_case(tmp_root, 10003, lesion_slices={5: 3}, gland_box=(0, 20, 10, 30)): True,
        picai_case(tmp_root, 10004, lesion_slices={5: 3}): False,
        picai_case(tmp_root, 10005, lesion_slices={11: 3}): True,
    }
    write_marksheet(tmp_root, cases)
    reasons = {case: result.reason for case, result in load_all(tmp_root).items()}
    assert reasons["10000_1000000"] == "csPCa case without expert lesion delineation (only AI-derived masks exist)"
    assert reasons["10001_1000001"] == "no expert lesion delineation (human_expert/resampled)"
    assert reasons["10002_1000002"].startswith("field of view 320x320 mm outside the accepted range")
    assert reasons["10003_1000003"].startswith("prostate extends beyond the field of view")
    assert reasons["10004_1000004"] == "marksheet says no csPCa but the expert mask disagrees"
    assert reasons["10005_1000005"] == "selected slice 11 does not contain the prostate"


def test_usable_cases_are_slices_and_excluded_are_not(tmp_root):
    good = picai_case(tmp_root, 10000, lesion_slices={5: 3})
    bad = picai_case(tmp_root, 10001, expert_mask=False)
    write_marksheet(tmp_root, {good: True, bad: False})
    results = load_all(tmp_root)
    assert isinstance(results[good], CaseSlice) and isinstance(results[bad], ExcludedCase)


def test_the_kept_slice_holds_no_volume(tmp_root):
    """A view would keep its whole volume alive: ~17 MB per case on the real release."""
    case = picai_case(tmp_root, 10000, lesion_slices={5: 3})
    write_marksheet(tmp_root, {case: True})
    result = load_all(tmp_root)[case]
    assert result.image.base is None and result.mask.base is None
    assert result.image.shape == result.mask.shape == (40, 40)
