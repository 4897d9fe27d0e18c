"""Tests for the BraTS-layout FLAIR brain-tumour phantoms."""

import csv
import pathlib

import nibabel as nib
import numpy as np
import pytest

from migros.data.brats import read_volume, whole_tumour_size
from migros.phantoms.brain import write_brats_phantoms

SHAPE = (60, 60, 40)
N_SUBJECTS = 40
SEED = 3


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("brats")
    write_brats_phantoms(root, N_SUBJECTS, SHAPE, SEED, show_progress=False)
    return root


def _case(index: int) -> str:
    return f"BraTS2021_{index:05d}"


def _load(root: pathlib.Path, index: int, canonical: bool = False) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    case = _case(index)
    images = tuple(nib.load(root / case / f"{case}_{suffix}.nii.gz") for suffix in ("flair", "seg"))
    return tuple(nib.as_closest_canonical(image) for image in images) if canonical else images


def _arrays(root: pathlib.Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    flair, seg = _load(root, index)
    return np.asarray(flair.dataobj), np.asarray(seg.dataobj)


def _truth(root: pathlib.Path) -> list[dict]:
    with open(root / "phantom_truth.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_layout_dtypes_and_geometry(phantom_root):
    cases = sorted(path.name for path in phantom_root.iterdir() if path.is_dir())
    assert cases == [_case(i) for i in range(N_SUBJECTS)]
    for index in range(N_SUBJECTS):
        flair, seg = _load(phantom_root, index)
        assert flair.shape == SHAPE and seg.shape == SHAPE
        assert flair.get_data_dtype() in (np.int16, np.float32)
        assert seg.get_data_dtype() == np.uint8
        for image in (flair, seg):
            assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
            np.testing.assert_allclose(image.header.get_zooms(), (4.0, 4.0, 155 / 40))
        data = np.asarray(flair.dataobj)
        assert data.min() == 0 and 300 < data.max() < 5000
        brain_fraction = np.count_nonzero(data) / data.size
        assert 0.15 < brain_fraction < 0.5


def test_labels_and_truth(phantom_root):
    rows = _truth(phantom_root)
    assert [row["case"] for row in rows] == [_case(i) for i in range(N_SUBJECTS)]
    for index, row in enumerate(rows):
        flair, seg = _arrays(phantom_root, index)
        assert set(np.unique(seg)) <= {0, 1, 2, 4}
        assert np.count_nonzero(seg) == int(row["tumour_voxels"]) > 0
        assert np.isin(seg, (2, 4)).any(), "every tumour has oedema or an enhancing rim"
        assert np.all(flair[seg > 0] > 0), "tumour lies inside the skull-stripped brain"
        centre = tuple(int(row[f"tumour_centre_{axis}"]) for axis in "xyz")
        assert seg[centre] in (1, 4), "the recorded centre lies in the tumour core"


def test_middle_slice_share(phantom_root):
    rows = _truth(phantom_root)
    labels = []
    for index, row in enumerate(rows):
        _, seg = _load(phantom_root, index, canonical=True)
        middle = np.asarray(seg.dataobj)[:, :, SHAPE[2] // 2]
        labels.append(int(middle.any()))
        assert labels[-1] == int(row["middle_slice_has_tumour"])
    assert 0.5 <= np.mean(labels) <= 0.9, "both labels common; glioblastoma-sized tumours mostly cross the middle"


def test_whole_tumours_have_glioblastoma_sizes(phantom_root):
    """Medians near 60 cm³ and 2,000 mm² on the largest axial slice, the FLAIR-hyperintensity sizes that divide a
    published cohort of pre-operative glioblastomas (docs/methods.md, "Lesion sizes"); the phantoms before 2026-12-02 had
    17 cm³ and 736 mm²."""
    segmentations = sorted(phantom_root.glob("*/*_seg.nii.gz"))
    volumes, areas = zip(*(whole_tumour_size(read_volume(path)) for path in segmentations))
    assert len(volumes) == N_SUBJECTS
    assert 35 <= np.median(volumes) <= 100
    assert 1000 <= np.median(areas) <= 3000
    assert max(volumes) < 500, "no tumour larger than the largest glioblastomas"


def test_deterministic_and_independent_of_subject_count_and_workers(phantom_root, tmp_path):
    write_brats_phantoms(tmp_path / "again", 2, SHAPE, SEED, show_progress=False)
    write_brats_phantoms(tmp_path / "twice", 3, SHAPE, SEED, show_progress=False, workers=2)
    write_brats_phantoms(tmp_path / "other", 2, SHAPE, SEED + 1, show_progress=False)
    for index in range(2):
        reference = _arrays(phantom_root, index)
        for run in ("again", "twice"):  # "twice": two processes
            for expected, actual in zip(reference, _arrays(tmp_path / run, index)):
                np.testing.assert_array_equal(actual, expected)
        other_flair, other_seg = _arrays(tmp_path / "other", index)
        assert not np.array_equal(other_flair, reference[0])
        assert not np.array_equal(other_seg, reference[1])


@pytest.mark.parametrize(
    "n_subjects, shape, seed",
    [
        (0, SHAPE, 0),
        (-2, SHAPE, 0),
        (1.5, SHAPE, 0),
        (1, (60, 60), 0),
        (1, (60, 60, 40, 1), 0),
        (1, (60, 0, 40), 0),
        (1, (60.0, 60, 40), 0),
        (1, SHAPE, -1),
    ],
)
def test_bad_arguments(tmp_path, n_subjects, shape, seed):
    with pytest.raises(ValueError):
        write_brats_phantoms(tmp_path, n_subjects, shape, seed, show_progress=False)
