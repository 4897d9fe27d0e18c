"""No global intensity statistic of a selected slice may give the label away on the phantoms (AUC ≤ 0.9)."""

import numpy as np
import pytest

from migros.data.shortcuts import statistic_aucs
from migros.data.records import CaseSlice
from migros.data.slices import load_cases, resize_case
from migros.phantoms.brain import write_brats_phantoms
from migros.phantoms.prostate import write_picai_phantoms

MAX_AUC = 0.9


def test_a_planted_brightness_shortcut_is_detected():
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (16, 16)) + 0.5 * label for label in (0, 1) * 20]
    assert statistic_aucs(images, [0, 1] * 20)["mean"] == 1.0


@pytest.mark.parametrize("loader", ["brats", "picai"])
def test_phantom_slices_have_no_intensity_shortcut(tmp_path, loader):
    if loader == "brats":
        write_brats_phantoms(tmp_path, 80, (80, 80, 52), seed=11, show_progress=False)
        fov = None
    else:
        write_picai_phantoms(tmp_path, 90, (96, 96, 16), (2.0, 2.0, 3.0), seed=11, show_progress=False)
        fov = (150.0, 260.0)
    slices = [item for item in load_cases(loader, tmp_path, (0.5, 99.5), fov) if isinstance(item, CaseSlice)]
    resized = [item for item in map(resize_case, slices, [64] * len(slices)) if isinstance(item, CaseSlice)]
    for cases in (slices, resized):  # as loaded, and as written to PNG
        aucs = statistic_aucs([item.image for item in cases], [item.label for item in cases])
        assert aucs.max() <= MAX_AUC, aucs.round(2).to_dict()
