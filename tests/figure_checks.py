"""What a figure shows, for tests: a blank or half-drawn figure must fail them, whatever its file size."""

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image


def drawn_fraction(png: Path) -> float:
    """Share of the PNG's pixels that are not (near) white: ~0 for a figure with only a title."""
    pixels = np.asarray(Image.open(png).convert("L"))
    return float((pixels < 245).mean())


def image_axes(figure: Figure) -> list[Axes]:
    """The axes that show an image (imshow), in the order they were added."""
    return [axis for axis in figure.axes if axis.images]


def shown_image(axis: Axes) -> np.ndarray:
    return np.asarray(axis.images[0].get_array())
