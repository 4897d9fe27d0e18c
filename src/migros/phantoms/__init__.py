"""Offline stand-ins for BraTS 2021 and PI-CAI, written in the real releases' file layouts."""

from pathlib import Path


def write_demo_dataset(loader: str, root: Path, settings: dict) -> None:
    """Phantoms for a dataset whose config says `root: demo`; `settings` is its `demo` config block."""
    if loader == "brats":
        from migros.phantoms.brain import write_brats_phantoms

        write_brats_phantoms(root, settings["cases"], tuple(settings["shape"]), settings["seed"])
    elif loader == "picai":
        from migros.phantoms.prostate import write_picai_phantoms

        write_picai_phantoms(root, settings["cases"], tuple(settings["shape"]), tuple(settings["spacing"]), settings["seed"])
    else:
        raise ValueError(f"no demo phantoms for loader {loader!r}")
