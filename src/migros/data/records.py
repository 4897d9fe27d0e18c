"""What every dataset loader returns: one selected 2D slice per case, or the reason the case was excluded."""

from dataclasses import dataclass

import numpy as np


class DatasetError(Exception):
    """Bad input data: the message names the file and the cause."""


@dataclass(frozen=True)
class CaseSlice:
    """The slice chosen for one case, in radiological display (anterior up, patient right on image left).

    `image` and `mask` are copies of one slice, never views: a view would keep its whole volume in memory.
    """

    case: str
    patient: str  # cases of one patient always share a split (BraTS: the subject is the case)
    label: int  # 1: lesion present in the slice, 0: none
    slice_index: int  # axial index in the reoriented volume (RAS for NIfTI, LPS for MHA), 0 = most inferior
    image: np.ndarray  # float32 in [0, 1], robustly normalised over the whole volume
    mask: np.ndarray  # bool, lesion voxels of the slice
    source_file: str
    skipped_checks: tuple[str, ...] = ()  # checks that could not run for this case (an optional file is absent)


@dataclass(frozen=True)
class ExcludedCase:
    case: str
    source_file: str
    reason: str
