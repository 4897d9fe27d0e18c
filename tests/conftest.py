"""Small hand-made cases in the real BraTS 2021 and PI-CAI layouts, with known geometry; the session's one complete
tiny run of the workflow."""

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from migros.data import picai
from workflow_run import REPO, start_tiny_workflow, validated

BRATS_LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS files store x towards patient left, y posterior


def fid_settings(**changes):
    """The FID stages' settings (migros.evaluation.fid.FidSettings) that the schema's defaults give, with
    `changes`."""
    from migros.evaluation.fid import FidSettings  # torch: imported only by the tests that use it

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    section = validated({**config, "fid": {"reference_split": "test"}})["fid"]
    del section["reference_split"]  # picks the rules' input files only
    return FidSettings.from_config({**section, "weights_cache_dir": "results/fid/inception", **changes})


def write_nifti(path: Path, array: np.ndarray, affine=BRATS_LPS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def brats_case(
    root: Path, case: str, tumour_slice: int | None, shape=(32, 32, 9), affine=BRATS_LPS_AFFINE, extension=".nii.gz"
) -> Path:
    """A FLAIR block of brain with, if asked, a tumour blob centred in one axial slice (array axis 2)."""
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    flair = np.zeros(shape, np.float32)
    flair[4:-4, 4:-4, :] = 300 + 20 * rng.standard_normal((shape[0] - 8, shape[1] - 8, shape[2]))
    seg = np.zeros(shape, np.uint8)
    if tumour_slice is not None:
        seg[12:18, 12:18, tumour_slice] = 2
        seg[14:16, 14:16, tumour_slice] = 4
        flair[seg > 0] = 800
    folder = root / case
    write_nifti(folder / f"{case}_flair{extension}", flair, affine)
    write_nifti(folder / f"{case}_seg{extension}", seg, affine)
    return folder


def write_mha(path: Path, array_zyx: np.ndarray, spacing=(1.5, 1.5, 3.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def picai_case(
    root: Path,
    patient: int,
    lesion_slices: dict[int, int] | None = None,
    shape_zyx=(12, 40, 40),
    spacing=(4.5, 4.5, 3.0),
    expert_mask=True,
    gland_box=(10, 30, 10, 30),
    fold=0,
    study: int | None = None,
    gland_mask=True,
) -> str:
    """A T2W case; lesion_slices maps axial index → lesion half-width (area grows with it). The study id defaults
    to one per patient; give it to make several studies of one patient."""
    study = 1000000 + patient - 10000 if study is None else study
    case = f"{patient}_{study}"
    rng = np.random.default_rng(patient)
    t2w = (400 + 30 * rng.standard_normal(shape_zyx)).astype(np.float32)
    lesions = np.zeros(shape_zyx, np.uint8)
    for z, half_width in (lesion_slices or {}).items():
        lesions[z, 20 - half_width : 20 + half_width, 20 - half_width : 20 + half_width] = 3
    t2w[lesions > 0] = 150
    gland = np.zeros(shape_zyx, np.uint8)
    r0, r1, c0, c1 = gland_box
    gland[2:-2, r0:r1, c0:c1] = 1
    write_mha(root / f"picai_public_images_fold{fold}" / str(patient) / f"{case}_t2w.mha", t2w, spacing)
    if expert_mask:
        write_mha(root / picai.EXPERT_MASKS / f"{case}.nii.gz", lesions, spacing)
    if gland_mask:
        write_mha(root / picai.GLAND_MASKS / f"{case}.nii.gz", gland, spacing)
    return case


def write_marksheet(root: Path, cases: dict[str, bool], drop_columns=(), repeat_rows=0) -> Path:
    """The marksheet's identifying columns and case_csPCa; optionally without some columns or with the first
    `repeat_rows` rows listed twice."""
    rows = [
        {"patient_id": case.split("_")[0], "study_id": case.split("_")[1], "case_csPCa": "YES" if positive else "NO"}
        for case, positive in cases.items()
    ]
    path = root / picai.MARKSHEET
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows + rows[:repeat_rows]).drop(columns=list(drop_columns)).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny models: intra-op threads cost more in synchronisation than they save, and far more
    when other processes share the cores. Restored afterwards so other test modules are unaffected."""
    import torch  # only the modules that ask for this fixture pay for importing torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tmp_root(tmp_path):
    return tmp_path / "dataset"


@pytest.fixture(scope="session", autouse=True)
def workflow_runs(request, tmp_path_factory):
    """The workflow runs that tests read, each started with the session when a collected test reads it: the
    complete tiny run of the default (fixture `finished_run`) and the paper configuration on SD v1.5's architecture
    (`paper_run`). Their minutes of jobs then overlap with the tests that come first, which mostly leave a core
    idle."""
    wanted = {name for item in request.session.items for name in item.fixturenames}
    runs = {}
    if "finished_run" in wanted:
        runs["finished_run"] = start_tiny_workflow(tmp_path_factory.mktemp("workflow"))
    if "paper_run" in wanted:
        from paper_run import PaperRun  # imports torch and diffusers: only sessions that run it pay for them

        runs["paper_run"] = PaperRun(tmp_path_factory.mktemp("paper"))
    if not runs:
        yield runs
        return
    import torch

    # The runs' jobs hold the cores: a second intra-op thread here would mostly wait for a core (measured on 2
    # cores: fine-tuning tests 5-10x slower with 2 threads beside the runs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield runs
    torch.set_num_threads(threads)
    for run in runs.values():
        run.stop()


@pytest.fixture(scope="session")
def finished_run(workflow_runs):
    """One complete tiny run of the workflow for the whole session (it takes minutes): tests only read it, or
    dry-run it with their own new config files, so that no test depends on another or on the order."""
    return workflow_runs["finished_run"].wait()


@pytest.fixture(scope="session")
def paper_run(workflow_runs):
    """(workdir, HF_HOME) of config/paper.yaml's run on SD v1.5's architecture (tests/paper_run.py)."""
    return workflow_runs["paper_run"].wait()
