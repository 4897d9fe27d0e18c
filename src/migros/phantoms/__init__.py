"""Offline stand-ins for BraTS 2021 and PI-CAI, written in the real releases' file layouts."""

from dataclasses import dataclass
from pathlib import Path

from migros.settings import StageSettings


@dataclass(frozen=True)
class PhantomSettings(StageSettings):
    """A dataset's `demo` section and its `loader`, which picks the phantom kind."""

    SECTION = "datasets.<name>.demo"
    loader: str
    cases: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None  # PI-CAI phantoms only
    seed: int


def write_demo_dataset(settings: PhantomSettings, root: Path, workers: int = 1) -> None:
    """Phantoms for a dataset whose config says `root: demo`, in the layout of its `loader`; brain phantoms are
    written by `workers` processes (the same phantoms whatever their number)."""
    # Imported here so that the settings class stays importable without nilearn's template loading.
    from migros.phantoms.brain import write_brats_phantoms
    from migros.phantoms.prostate import write_picai_phantoms

    if settings.loader == "brats":
        write_brats_phantoms(root, settings.cases, settings.shape, settings.seed, workers=workers)
    elif settings.loader == "picai":
        write_picai_phantoms(root, settings.cases, settings.shape, settings.spacing, settings.seed)
    else:
        raise ValueError(f"no phantoms for loader {settings.loader!r}: expected 'brats' or 'picai'")
