import numpy as np
import pandas as pd
import pytest

from migros.prompts import (
    GenerationPromptSettings, PromptSettings, check_templates, generation_prompts, grid_position, size_class,
    train_prompts,
)
from migros.settings import SettingsError

BRATS_POSITIVE = "Brain MRI Flair, with {size} tumour on the {position}"


@pytest.mark.parametrize("fraction, expected", [(0.001, "small"), (0.01, "medium"), (0.029, "medium"), (0.03, "large")])
def test_size_class_thresholds(fraction, expected):
    assert size_class(fraction, small_below=0.01, large_from=0.03) == expected


def test_size_thresholds_must_be_ordered():
    section = {"positive": BRATS_POSITIVE, "negative": "healthy", "size_thresholds": {"small_below": 0.05, "large_from": 0.01}}
    with pytest.raises(ValueError, match=r"size_thresholds: small_below \(0.05\) must not be above large_from"):
        PromptSettings.from_config(section)


def test_prompt_settings_name_their_section_on_an_unknown_or_missing_key():
    with pytest.raises(SettingsError, match=r"datasets.<name>.prompts: missing key\(s\) \['size_thresholds'\]"):
        PromptSettings.from_config({"positive": BRATS_POSITIVE, "negative": "healthy"})
    with pytest.raises(SettingsError, match=r"generation \(prompts\): unknown key\(s\) \['steps'\]"):
        GenerationPromptSettings.from_config({"images": 10, "seed": 0, "steps": 5})


def blob(row, col, size=30):
    mask = np.zeros((size, size), bool)
    mask[row - 1 : row + 2, col - 1 : col + 2] = True
    return mask


@pytest.mark.parametrize(
    "row, col, expected",
    [(11, 11, "top left"), (11, 19, "top right"), (15, 15, "center"), (15, 11, "center left"), (19, 15, "bottom center")],
)
def test_position_is_taken_on_the_anatomy_bounding_box(row, col, expected):
    image = np.zeros((30, 30), np.float32)
    image[9:21, 9:21] = 0.8  # the anatomy fills only the middle of the image
    assert grid_position(blob(row, col), image) == expected


def metadata_with(prompt_rows, tmp_path):
    """A metadata table whose train cases have PNG masks at the given centres (None: healthy)."""
    import cv2

    rows = []
    for i, (centre, fraction) in enumerate(prompt_rows):
        image = np.zeros((30, 30), np.uint8)
        image[3:27, 3:27] = 200
        mask = blob(*centre).astype(np.uint8) * 255 if centre else np.zeros((30, 30), np.uint8)
        image_path, mask_path = tmp_path / f"i{i}.png", tmp_path / f"m{i}.png"
        cv2.imwrite(str(image_path), image)
        cv2.imwrite(str(mask_path), mask)
        rows.append(
            {"case": f"c{i}", "split": "train", "label": int(centre is not None), "lesion_area_fraction": fraction,
             "image": str(image_path), "mask": str(mask_path)}
        )
    rows.append({**rows[0], "case": "held-out", "split": "test"})
    return pd.DataFrame(rows)


def test_train_prompts_follow_masks_and_templates(tmp_path):
    metadata = metadata_with([((5, 5), 0.001), ((15, 24), 0.05), (None, 0.0)], tmp_path)
    prompts = train_prompts(metadata, BRATS_POSITIVE, "Brain MRI Flair, healthy", 0.01, 0.03)
    assert prompts.prompt.tolist() == [
        "Brain MRI Flair, with small tumour on the top left",
        "Brain MRI Flair, with large tumour on the center right",
        "Brain MRI Flair, healthy",
    ]
    prostate = train_prompts(metadata, "Prostate MRI t2, with {size} tumour", "Prostate MRI t2 healthy", 0.01, 0.03)
    assert prostate.prompt.tolist()[:2] == ["Prostate MRI t2, with small tumour", "Prostate MRI t2, with large tumour"]
    assert (prostate.position == "").all()


def test_templates_are_checked():
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        check_templates("with {colour} tumour", "healthy")
    with pytest.raises(ValueError, match="must not contain fields"):
        check_templates("with {size} tumour", "healthy {size}")


def test_generation_prompts_are_half_healthy_follow_training_and_have_own_seeds():
    tumour = ["with small tumour on the top left"] * 30 + ["with large tumour on the center"] * 10
    train = pd.DataFrame({"prompt": tumour + ["healthy"] * 40, "label": [1] * 40 + [0] * 40})
    prompts = generation_prompts(train, n_images=1000, seed=7)
    assert len(prompts) == 1000 and prompts.label.sum() == 500
    assert (prompts[prompts.label == 0].prompt == "healthy").all()
    share = (prompts[prompts.label == 1].prompt == tumour[0]).mean()
    assert 0.68 < share < 0.82  # 75 % in training
    assert prompts.seed.is_unique and prompts.seed.tolist() == list(range(7, 1007))
    pd.testing.assert_frame_equal(prompts, generation_prompts(train, n_images=1000, seed=7))
    # the seed of image i depends on i alone, so a subset can be regenerated identically
    assert generation_prompts(train, n_images=10, seed=7).seed.tolist() == list(range(7, 17))
