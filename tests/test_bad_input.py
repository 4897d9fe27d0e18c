"""The bad-input matrix of the slice stage: one test per row, on files built here with nibabel and SimpleITK.

Every row either stops the run with a DatasetError naming the file and the cause, or excludes the case with its
reason, or keeps the case and reports the check it could not run; nothing is dropped or relabelled silently.
"""

import logging

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import BRATS_LPS_AFFINE, brats_case, picai_case, write_marksheet, write_mha, write_nifti

from migros.data import brats, picai
from migros.data.records import CaseSlice, DatasetError

PERCENTILES = (0.5, 99.5)
FOV_MM = (150.0, 260.0)
CASE = "BraTS2021_00000"


def load_picai(root, fov_mm=FOV_MM):
    return {files.case: picai.load_case(files, PERCENTILES, fov_mm) for files in picai.find_cases(root)}


def brats_file(case_dir, modality):
    return case_dir / f"{CASE}_{modality}.nii.gz"


def rewrite_nifti(path, change):
    """Rewrite a NIfTI file with its array changed by `change` (same affine)."""
    image = nib.load(path)
    write_nifti(path, change(np.asarray(image.dataobj).copy()), image.affine)


def one_picai_case(root, **arguments):
    case = picai_case(root, 10000, lesion_slices={5: 3}, **arguments)
    write_marksheet(root, {case: True})
    return case


def t2w_file(root):
    return next(root.glob("picai_public_images_fold*/*/*_t2w.mha"))


# Truncated gzip


def test_brats_gzip_truncated_in_the_header_is_named(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4), "flair")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf"{path}: cannot be read: the file exists \(200 bytes\) but its header is unreadable"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_gzip_truncated_in_the_data_is_named(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4, shape=(64, 64, 32)), "flair")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"{path}: cannot be read: the header is readable .* data is truncated or corrupt"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_file_that_is_not_a_nifti_is_named(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4), "seg")
    path.write_bytes(b"\x1f\x8b" + b"this is not an image")
    with pytest.raises(DatasetError, match=f"{path}: cannot be read"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


# NaN / Inf volume, NaN in one slice


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_brats_flair_with_non_finite_voxels_stops_with_the_count(tmp_root, value):
    path = brats_file(brats_case(tmp_root, CASE, 4), "flair")
    rewrite_nifti(path, lambda flair: np.where(np.arange(flair.size).reshape(flair.shape) % 100 == 0, value, flair))
    with pytest.raises(DatasetError, match=rf"{path}: 93 of 9216 voxels are not finite \(NaN or ±Inf\)"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_nan_in_the_shown_slice_stops_instead_of_a_black_image(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4), "flair")

    def nan_in_middle_slice(flair):
        flair[:, :, 4] = np.nan
        return flair

    rewrite_nifti(path, nan_in_middle_slice)
    with pytest.raises(DatasetError, match=f"{path}: 1024 of 9216 voxels are not finite"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_nan_in_one_slice_of_the_segmentation_stops(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4), "seg")

    def nan_slice(seg):
        seg = seg.astype(np.float32)
        seg[:, :, 2] = np.nan
        return seg

    rewrite_nifti(path, nan_slice)
    with pytest.raises(DatasetError, match=f"{path}: 1024 of 9216 voxels are not finite"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_picai_t2w_with_nan_stops_with_the_count(tmp_root):
    one_picai_case(tmp_root)
    path = t2w_file(tmp_root)
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    volume[3, :5, :5] = np.nan
    write_mha(path, volume, (4.5, 4.5, 3.0))
    with pytest.raises(DatasetError, match=f"{path}: 25 of 19200 voxels are not finite"):
        load_picai(tmp_root)


def test_picai_mask_with_inf_in_one_slice_stops(tmp_root):
    case = one_picai_case(tmp_root)
    path = tmp_root / picai.EXPERT_MASKS / f"{case}.nii.gz"
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    mask[7] = np.inf
    write_mha(path, mask, (4.5, 4.5, 3.0))
    with pytest.raises(DatasetError, match=f"{path}: 1600 of 19200 voxels are not finite"):
        load_picai(tmp_root)


# 4D volume


def test_brats_4d_flair_is_named(tmp_root):
    path = brats_file(brats_case(tmp_root, CASE, 4), "flair")
    rewrite_nifti(path, lambda flair: np.stack([flair, flair], axis=-1))
    with pytest.raises(DatasetError, match=rf"{path}: expected a 3D volume, found shape \(32, 32, 9, 2\)"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_picai_4d_t2w_is_named(tmp_root):
    one_picai_case(tmp_root)
    path = t2w_file(tmp_root)
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([volume, volume])), str(path))
    with pytest.raises(DatasetError, match=f"{path}: expected a 3D single-channel volume"):
        load_picai(tmp_root)


# Shape / spacing / affine mismatch, mirrored segmentation


def test_brats_seg_shape_mismatch_is_named(tmp_root):
    seg = brats_file(brats_case(tmp_root, CASE, 4), "seg")
    write_nifti(seg, np.zeros((32, 32, 7), np.uint8))
    with pytest.raises(DatasetError, match=f"{seg}: shape .* does not match the FLAIR shape"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_seg_spacing_mismatch_is_named(tmp_root):
    seg = brats_file(brats_case(tmp_root, CASE, 4), "seg")
    write_nifti(seg, np.asarray(nib.load(seg).dataobj), np.diag([-1.0, -1.0, 2.0, 1.0]))
    with pytest.raises(DatasetError, match=rf"{seg}: voxel spacing \(1.0, 1.0, 2.0\) mm does not match the FLAIR's \(1.0, 1.0, 1.0\)"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_brats_seg_shifted_affine_is_named(tmp_root):
    seg = brats_file(brats_case(tmp_root, CASE, 4), "seg")
    shifted = BRATS_LPS_AFFINE.copy()
    shifted[:3, 3] = (5.0, 0.0, 0.0)
    write_nifti(seg, np.asarray(nib.load(seg).dataobj), shifted)
    with pytest.raises(DatasetError, match=f"{seg}: affine .* does not match the FLAIR's"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


@pytest.mark.parametrize("move_origin", [False, True], ids=["sign-flipped", "flipped-onto-the-same-box"])
def test_brats_mirrored_seg_stops(tmp_root, move_origin):
    """Mirrored left-right: the mask would appear beside the tumour with the label kept."""
    seg = brats_file(brats_case(tmp_root, CASE, 4), "seg")
    mirrored = BRATS_LPS_AFFINE.copy()
    mirrored[0, 0] = 1.0
    if move_origin:  # the same world box, voxels stored in the opposite order
        mirrored[0, 3] = -31.0
    write_nifti(seg, np.asarray(nib.load(seg).dataobj), mirrored)
    with pytest.raises(DatasetError, match=f"{seg}: orientation RPS does not match the FLAIR's LPS"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_picai_mask_size_spacing_and_origin_mismatch_are_named(tmp_root):
    case = one_picai_case(tmp_root)
    mask = write_mha(tmp_root / picai.EXPERT_MASKS / f"{case}.nii.gz", np.zeros((12, 40, 30), np.uint8), (4.5, 4.5, 3.0))
    with pytest.raises(DatasetError, match=f"{mask}: size .* does not match"):
        load_picai(tmp_root)
    write_mha(mask, np.zeros((12, 40, 40), np.uint8), (4.0, 4.5, 3.0))
    with pytest.raises(DatasetError, match=f"{mask}: spacing does not match"):
        load_picai(tmp_root)
    image = sitk.GetImageFromArray(np.zeros((12, 40, 40), np.uint8))
    image.SetSpacing((4.5, 4.5, 3.0))
    image.SetOrigin((0.0, 9.0, 0.0))
    sitk.WriteImage(image, str(mask))
    with pytest.raises(DatasetError, match=f"{mask}: origin does not match"):
        load_picai(tmp_root)


def test_picai_mirrored_mask_stops(tmp_root):
    case = one_picai_case(tmp_root)
    path = tmp_root / picai.EXPERT_MASKS / f"{case}.nii.gz"
    image = sitk.ReadImage(str(path))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    image.SetOrigin((4.5 * 39, 0, 0))  # the same box, voxels stored in the opposite order
    sitk.WriteImage(image, str(path))
    with pytest.raises(DatasetError, match=f"{path}: direction does not match"):
        load_picai(tmp_root)


# Empty or missing folder


@pytest.mark.parametrize("module, message", [(brats, "no BraTS2021_<id> case folders"), (picai, "no picai_public_images_fold")])
def test_missing_and_empty_dataset_folders_are_named(tmp_path, module, message):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'absent'}: .* does not exist"):
        module.find_cases(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path / 'empty'}: {message}"):
        module.find_cases(tmp_path / "empty")


# Missing modality


@pytest.mark.parametrize("missing", ["flair", "seg"])
def test_brats_missing_modality_is_named(tmp_root, missing):
    path = brats_file(brats_case(tmp_root, CASE, 4), missing)
    path.unlink()
    with pytest.raises(DatasetError, match=f"{path}: file is missing \\(and there is no {CASE}_{missing}.nii either\\)"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


def test_picai_study_without_t2w_is_named(tmp_root):
    one_picai_case(tmp_root)
    t2w = t2w_file(tmp_root)
    t2w.rename(t2w.with_name(t2w.name.replace("_t2w", "_adc")))
    with pytest.raises(DatasetError, match=f"{t2w}: T2W scan is missing, though the study has"):
        picai.find_cases(tmp_root)


def test_picai_missing_marksheet_is_named(tmp_root):
    picai_case(tmp_root, 10000)
    with pytest.raises(DatasetError, match="marksheet.csv: PI-CAI marksheet is missing"):
        picai.find_cases(tmp_root)


# Unreadable .mha


def test_mha_with_an_unreadable_header_says_it_exists_and_its_size(tmp_root):
    one_picai_case(tmp_root)
    path = t2w_file(tmp_root)
    path.write_bytes(b"not a MetaImage header")
    with pytest.raises(DatasetError, match=rf"{path}: cannot be read: the file exists \(22 bytes\) but its header is unreadable") as error:
        load_picai(tmp_root)
    assert "No such file or directory" not in str(error.value)


def test_truncated_mha_says_the_data_is_truncated(tmp_root):
    one_picai_case(tmp_root)
    path = t2w_file(tmp_root)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=rf"{path}: cannot be read: the header is readable \(size \(40, 40, 12\), 32-bit float\) but the image data is truncated or corrupt \(the file has 1000 bytes\)") as error:
        load_picai(tmp_root)
    assert "No such file or directory" not in str(error.value)


# Marksheet missing a column


@pytest.mark.parametrize("column", ["patient_id", "study_id"])
def test_marksheet_without_an_identifying_column_stops(tmp_root, column):
    case = picai_case(tmp_root, 10000)
    path = write_marksheet(tmp_root, {case: False}, drop_columns=[column])
    with pytest.raises(DatasetError, match=rf"{path}: missing columns \['{column}'\]"):
        picai.find_cases(tmp_root)


def test_marksheet_without_case_cspca_keeps_the_case_and_reports_the_skipped_check(tmp_root):
    case = picai_case(tmp_root, 10000, lesion_slices={5: 3})
    write_marksheet(tmp_root, {case: False}, drop_columns=["case_csPCa"])  # would contradict the mask if present
    result = load_picai(tmp_root)[case]
    assert isinstance(result, CaseSlice) and result.label == 1
    assert result.skipped_checks == (picai.NO_CSPCA_COLUMN,)


def test_case_missing_from_the_marksheet_reports_the_skipped_check(tmp_root):
    case = picai_case(tmp_root, 10000, lesion_slices={5: 3})
    other = picai_case(tmp_root, 10001)
    write_marksheet(tmp_root, {other: False})
    assert load_picai(tmp_root)[case].skipped_checks == (picai.NOT_IN_MARKSHEET,)


def test_marksheet_with_an_unknown_cspca_value_stops(tmp_root):
    case = picai_case(tmp_root, 10000)
    path = write_marksheet(tmp_root, {case: False})
    path.write_text(path.read_text().replace("NO", "maybe"))
    with pytest.raises(DatasetError, match=rf"{path}: case_csPCa must be YES or NO, found \['10000_1000000: maybe'\]"):
        picai.find_cases(tmp_root)


def test_missing_whole_gland_mask_keeps_the_case_and_reports_the_skipped_check(tmp_root):
    case = one_picai_case(tmp_root, gland_mask=False)
    assert load_picai(tmp_root)[case].skipped_checks == (picai.NO_GLAND_MASK,)


def test_without_field_of_view_mm_the_size_is_not_checked_and_that_is_reported(tmp_root):
    case = one_picai_case(tmp_root, spacing=(8.0, 8.0, 3.0))  # 320 mm: outside FOV_MM
    assert load_picai(tmp_root)[case].reason.startswith("field of view 320x320 mm outside")
    result = load_picai(tmp_root, fov_mm=None)[case]
    assert isinstance(result, CaseSlice) and result.skipped_checks == (picai.NO_FOV_RANGE,)


# Duplicate case ids, a case listed twice in two folds


def test_duplicate_case_ids_in_the_marksheet_stop(tmp_root):
    case = picai_case(tmp_root, 10000)
    path = write_marksheet(tmp_root, {case: False}, repeat_rows=1)
    with pytest.raises(DatasetError, match=rf"{path}: cases listed more than once: \['{case}'\]"):
        picai.find_cases(tmp_root)


def test_a_case_in_two_folds_stops_naming_both_files(tmp_root):
    case = picai_case(tmp_root, 10000, fold=0)
    picai_case(tmp_root, 10000, fold=3)
    write_marksheet(tmp_root, {case: False})
    with pytest.raises(DatasetError, match=f"{case}: the same study is in more than one fold: .*fold0.*fold3"):
        picai.find_cases(tmp_root)


def test_a_file_in_another_patients_folder_stops(tmp_root):
    one_picai_case(tmp_root)
    path = t2w_file(tmp_root)
    moved = path.parent.with_name("10001") / path.name
    moved.parent.mkdir()
    path.rename(moved)
    with pytest.raises(DatasetError, match=f"{moved}: lies in folder '10001' but its name says patient '10000'"):
        picai.find_cases(tmp_root)


# BraTS mask with labels outside {0, 1, 2, 4}


@pytest.mark.parametrize("label", [3, 1.5, 255])
def test_brats_seg_labels_outside_the_brats_set_stop(tmp_root, label):
    seg = brats_file(brats_case(tmp_root, CASE, 4), "seg")

    def relabel(data):
        data = data.astype(np.float32)
        data[0, 0, :3] = label
        return data

    rewrite_nifti(seg, relabel)
    with pytest.raises(DatasetError, match=rf"{seg}: 3 voxels have labels {label} outside BraTS's"):
        brats.load_case(tmp_root / CASE, PERCENTILES)


# Plain .nii (not a bad input, but it stopped the run before)


def test_brats_plain_nii_is_read_like_nii_gz(tmp_root):
    compressed = brats.load_case(brats_case(tmp_root / "gz", CASE, 4), PERCENTILES)
    plain = brats.load_case(brats_case(tmp_root / "nii", CASE, 4, extension=".nii"), PERCENTILES)
    assert plain.source_file.endswith(f"{CASE}_flair.nii")
    np.testing.assert_array_equal(plain.image, compressed.image)
    assert plain.label == compressed.label == 1


def test_brats_with_both_nii_and_nii_gz_reads_the_gz_and_says_so(tmp_root, caplog):
    case_dir = brats_case(tmp_root, CASE, 4)
    brats_case(tmp_root, CASE, None, extension=".nii")  # a different (negative) plain copy
    with caplog.at_level(logging.WARNING, logger="migros.data.brats"):
        result = brats.load_case(case_dir, PERCENTILES)
    assert result.label == 1 and result.source_file.endswith(".nii.gz")
    assert f"{case_dir / f'{CASE}_flair.nii.gz'} and {CASE}_flair.nii both exist: reading the .nii.gz" in caplog.text
