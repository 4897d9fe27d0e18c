"""The datasets the pipeline reads. One module per dataset holds its layout, finding its cases
(`find_cases(root)`), loading one case (`load_case(case, intensity_percentiles, fov_mm)`, which returns a
`records.CaseSlice` or an `records.ExcludedCase`); `DATASETS` maps a config `loader` to its module, so a new
dataset is one module and one line here. Loaders never import the phantoms: `migros.phantoms` writes a layout by
importing its names from here, so the arrows run one way."""

from types import ModuleType

from migros.data import brats, picai

DATASETS: dict[str, ModuleType] = {"brats": brats, "picai": picai}


def dataset_module(loader: str) -> ModuleType:
    """The module of a config `loader`; an unknown one is an error that names the known ones."""
    if loader not in DATASETS:
        raise ValueError(f"unknown loader {loader!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[loader]
