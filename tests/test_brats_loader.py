import nibabel as nib
import numpy as np
import pytest
from conftest import brats_case, write_nifti

from migros.data import brats
from migros.data.records import DatasetError

PERCENTILES = (0.5, 99.5)


def test_middle_slice_labels_follow_the_segmentation(tmp_root):
    positive = brats_case(tmp_root, "BraTS2021_00000", tumour_slice=4)  # 9 slices: middle is 4
    negative = brats_case(tmp_root, "BraTS2021_00001", tumour_slice=1)
    assert brats.load_case(positive, PERCENTILES).label == 1
    result = brats.load_case(negative, PERCENTILES)
    assert result.label == 0
    assert result.slice_index == 4
    assert not result.mask.any()


def test_slice_is_normalised_to_unit_range(tmp_root):
    result = brats.load_case(brats_case(tmp_root, "BraTS2021_00000", tumour_slice=4), PERCENTILES)
    assert result.image.dtype == np.float32
    assert result.image.min() == 0.0 and result.image.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "affine", [np.diag([-1.0, -1.0, 1.0, 1.0]), np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([-1.0, 1.0, 1.0, 1.0])]
)
def test_display_is_radiological_whatever_the_header(tmp_root, affine):
    """A marker at the patient's anterior right must appear at the image's top left."""
    shape = (20, 20, 5)
    flair = np.random.default_rng(0).uniform(100, 200, shape).astype(np.float32)
    corners = [(i, j) for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)]
    # nibabel's world space is RAS+: the anterior-right corner has the largest x + y
    world = [nib.affines.apply_affine(affine, (i, j, 0)) for i, j in corners]
    i, j = corners[int(np.argmax([x + y for x, y, _ in world]))]
    flair[i, j, :] = 1000.0
    case = tmp_root / "BraTS2021_00000"
    write_nifti(case / "BraTS2021_00000_flair.nii.gz", flair, affine)
    write_nifti(case / "BraTS2021_00000_seg.nii.gz", np.zeros(shape, np.uint8), affine)
    image = brats.load_case(case, PERCENTILES).image
    assert np.unravel_index(np.argmax(image), image.shape) == (0, 0)


def test_empty_flair_is_named(tmp_root):
    case = brats_case(tmp_root, "BraTS2021_00000", tumour_slice=4)
    flair = case / "BraTS2021_00000_flair.nii.gz"
    write_nifti(flair, np.zeros((32, 32, 9), np.float32))
    with pytest.raises(DatasetError, match=f"{flair}: volume has no non-zero voxels"):
        brats.load_case(case, PERCENTILES)


def test_the_kept_slice_holds_no_volume(tmp_root):
    result = brats.load_case(brats_case(tmp_root, "BraTS2021_00000", tumour_slice=4), PERCENTILES)
    assert result.image.base is None and result.mask.base is None
    assert result.image.shape == result.mask.shape == (32, 32)


def test_a_field_of_view_range_is_refused_for_brats(tmp_root):
    """field_of_view_mm is PI-CAI's check; on BraTS it would be silently meaningless, so it stops the run."""
    with pytest.raises(DatasetError, match="field_of_view_mm is a PI-CAI check"):
        brats.load_case(brats_case(tmp_root, "BraTS2021_00000", tumour_slice=4), PERCENTILES, (150.0, 260.0))


def test_whole_tumour_size_follows_the_voxel_grid_whatever_the_axis_order(tmp_root):
    """A 10 x 8 x 6 mm box of labels 1 / 2 / 4 on 1 x 2 x 3 mm voxels, stored with the axes in S, R, A order: 480 mm³
    and 80 mm² per axial slice, whatever the storage order (the stored first two axes' sizes would give 120 mm²)."""
    seg_ras = np.zeros((20, 10, 8), np.uint8)
    seg_ras[2:12, 3:7, 1:3] = 2
    seg_ras[4:6, 4:5, 1] = 4
    stored = np.transpose(seg_ras, (2, 0, 1))  # stored axis 0 = S, 1 = R, 2 = A
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 3.0, 1.0, 2.0, 1.0
    path = write_nifti(tmp_root / "seg.nii.gz", stored, affine)
    volume_cm3, largest_axial_mm2 = brats.whole_tumour_size(brats.read_volume(path))
    assert volume_cm3 == pytest.approx(0.48)
    assert largest_axial_mm2 == pytest.approx(80.0)
