"""The one PNG reader of the stages after `slices`: same pixels as before for valid files, the file named otherwise."""

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from migros.evaluation.memorisation import read_gray_stack
from migros.images import ImageFileError, open_image, read_gray
from migros.prompts import train_prompts


def write_png(path, array):
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def gray_png(tmp_path):
    return write_png(tmp_path / "gray.png", np.random.default_rng(0).integers(0, 256, (24, 24), dtype=np.uint8))


def test_valid_images_give_the_pixels_the_stages_read_before(tmp_path, gray_png):
    assert np.array_equal(np.asarray(open_image(gray_png, "L")), np.asarray(Image.open(gray_png).convert("L")))
    assert np.array_equal(np.asarray(open_image(gray_png, "RGB")), np.asarray(Image.open(gray_png).convert("RGB")))
    expected = cv2.imread(str(gray_png), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0  # the former read_gray
    assert np.array_equal(read_gray(gray_png), expected) and read_gray(gray_png).dtype == np.float32
    rgb = write_png(tmp_path / "rgb.png", np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(open_image(rgb, "L")), np.asarray(Image.open(rgb).convert("L")))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageFileError, match=f"{tmp_path / 'gone.png'}: image file is missing, though a manifest"):
        open_image(tmp_path / "gone.png", "L")


@pytest.mark.parametrize("keep_bytes", [30, 200])
def test_truncated_png_is_named(gray_png, keep_bytes):
    gray_png.write_bytes(gray_png.read_bytes()[:keep_bytes])
    with pytest.raises(ImageFileError, match=rf"{gray_png}: cannot be read as an image \({keep_bytes} bytes"):
        open_image(gray_png, "L")


def test_wrong_size_is_named_where_sizes_must_agree(tmp_path, gray_png):
    small = write_png(tmp_path / "small.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ImageFileError, match=f"{small}: image is 16x16 px, expected 24x24 px"):
        read_gray_stack([gray_png, small])
    assert read_gray_stack([gray_png, gray_png]).shape == (2, 24, 24)


def test_prompt_stage_names_a_mask_of_another_size(tmp_path, gray_png):
    mask = write_png(tmp_path / "mask.png", np.full((16, 16), 255, np.uint8))
    metadata = pd.DataFrame(
        [{"split": "train", "label": 1, "lesion_area_fraction": 0.01, "image": str(gray_png), "mask": str(mask)}]
    )
    with pytest.raises(ImageFileError, match=f"{mask}: image is 16x16 px, expected 24x24"):
        train_prompts(metadata, "tumour on the {position}", "healthy", 0.005, 0.02)
