"""Reading the PNGs that the stages after `slices` consume (real slices, generated and post-processed images).

One reader so that every stage fails the same way, naming the file: a file listed in a manifest but missing, a
PNG truncated by an interrupted run, or an image of another size where sizes must agree. Pixels are those of
`PIL.Image.convert(mode)`, as the stages read them before.
"""

from pathlib import Path

import numpy as np
from PIL import Image

RERUN_HINT = "rerun the rule that writes it (delete the file first if it is corrupt)"


class ImageFileError(Exception):
    """A missing, unreadable or wrongly sized image: the message names the file and the fix."""


def open_image(path: str | Path, mode: str, size: tuple[int, int] | None = None) -> Image.Image:
    """The whole image decoded and converted to `mode` ("L", "RGB"); `size` (width, height) if it must be that."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: image file is missing, though a manifest or metadata table lists it; {RERUN_HINT}")
    try:
        with Image.open(path) as image:
            image.load()  # decodes everything now: a truncated PNG fails here, not later in a stage
            converted = image.convert(mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(
            f"{path}: cannot be read as an image ({path.stat().st_size} bytes; {error}); truncated by an "
            f"interrupted run? {RERUN_HINT}"
        ) from error
    if size is not None and converted.size != tuple(size):
        raise ImageFileError(
            f"{path}: image is {converted.size[0]}x{converted.size[1]} px, expected {size[0]}x{size[1]} px like the "
            f"other images it is used with"
        )
    return converted


def read_gray(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Grayscale image as float32 in [0, 1]."""
    return np.asarray(open_image(path, "L", size)).astype(np.float32) / 255.0


def read_gray_stack(paths) -> np.ndarray:
    """(n, height, width) uint8 stack of grayscale images, all of the first image's size."""
    paths = list(paths)
    if not paths:
        raise ValueError("no images to read")
    first = open_image(paths[0], "L")
    return np.stack([np.asarray(first)] + [np.asarray(open_image(path, "L", first.size)) for path in paths[1:]])
