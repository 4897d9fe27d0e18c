"""Benchmark (not a test): the lesion sizes of a config's phantoms, beside the published figures they are checked
against (docs/methods.md, "Lesion sizes").

Writes the phantoms of every dataset with `root: demo` in a temporary folder with the config's `demo` settings,
selects their slices with the config's slice settings (the `demo_data` and `slices` stages' code), and prints:
BraTS, the whole tumour's (FLAIR hyperintensity's) volume and its area on its largest axial slice; PI-CAI, the
equivalent diameter of the lesion on the selected slice; both, the share of the selected slice's image that the
lesion covers (what `size_thresholds` classify).

    python tests/benchmarks/lesion_sizes.py [--config config/config.yaml] [--cases 400]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from migros.data.brats import read_volume, whole_tumour_size
from migros.data.slices import SliceSettings, run_slice_stage
from migros.phantoms import PhantomSettings, write_demo_dataset

SLICE_KEYS = ("loader", "image_size", "intensity_percentiles", "field_of_view_mm", "split")


def quartiles(values: np.ndarray, digits: int = 0) -> str:
    low, median, high = np.percentile(values, [25, 50, 75])
    return f"median {median:.{digits}f} (quartiles {low:.{digits}f}-{high:.{digits}f}, n = {len(values)})"


def whole_tumour_sizes(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per BraTS case: whole-tumour volume (cm³) and its area (mm²) on its largest axial slice."""
    sizes = [whole_tumour_size(read_volume(path)) for path in sorted(root.glob("*/*_seg.nii.gz"))]
    return np.array([volume for volume, _ in sizes]), np.array([area for _, area in sizes])


def field_area_mm2(source_file: str) -> float:
    """In-plane area (mm²) of the field of view of a volume, read from its header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(source_file)
    reader.ReadImageInformation()
    (nx, ny, _), (sx, sy, _) = reader.GetSize(), reader.GetSpacing()
    return nx * sx * ny * sy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--cases", type=int, help="phantoms per dataset (default: the config's)")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    with tempfile.TemporaryDirectory() as temporary:
        for name, dataset in config["datasets"].items():
            if dataset["root"] != "demo":
                continue
            demo = {"spacing": None, **dataset["demo"], "loader": dataset["loader"]}
            if args.cases:
                demo["cases"] = args.cases
            root = Path(temporary) / name
            write_demo_dataset(PhantomSettings.from_config(demo), root)
            slice_settings = {"field_of_view_mm": None, **{key: dataset[key] for key in SLICE_KEYS if key in dataset}}
            metadata, _, _ = run_slice_stage(SliceSettings.from_config(slice_settings), root, root / "images",
                                             root / "masks")
            positives = metadata[metadata.label == 1]
            print(f"{name}: {len(positives)} tumour slices of {len(metadata)}")
            print(f"  lesion share of the slice image (%): {quartiles(100 * positives.lesion_area_fraction, 2)}")
            if dataset["loader"] == "brats":
                volumes, areas = whole_tumour_sizes(root)
                print(f"  whole-tumour volume (cm³): {quartiles(volumes, 1)}; {np.mean(volumes >= 60):.0%} >= 60")
                print(f"  its largest axial area (mm²): {quartiles(areas)}; {np.mean(areas >= 2000):.0%} >= 2000")
            else:
                fields = np.array([field_area_mm2(source) for source in positives.source_file])
                diameters = 2 * np.sqrt(positives.lesion_area_fraction.to_numpy() * fields / np.pi)
                print(f"  lesion equivalent diameter on the selected slice (mm): {quartiles(diameters, 1)}; "
                      f"{np.mean(diameters >= 10):.0%} >= 10")


if __name__ == "__main__":
    main()
