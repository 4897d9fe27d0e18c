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


def write_demo_dataset(settings: PhantomSettings, root: Path) -> None:
    """Phantoms for a dataset whose config says `root: demo`, written by its dataset module."""
    from migros.data import dataset_module  # the dataset modules import PhantomSettings from here

    dataset_module(settings.loader).write_phantoms(root, settings)
