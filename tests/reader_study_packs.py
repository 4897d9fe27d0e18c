"""Small reader-study packs for tests: generated sets and real slices written as the workflow's stages write them.

The generated images carry their method's name in a PNG text chunk and the diffusion methods' are RGB, the GAN's
grayscale, as the real stages' are: a pack that passed either on would show in the served bytes.
"""

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

from migros.reader_study.pack import PackSettings, build_pack

KINDS = {"selora_l1.00": "selora", "selora_l1.08": "selora", "cgan": "gan"}
FIDS = {"selora_l1.00": 40.0, "selora_l1.08": 55.0, "cgan": 30.0}  # the paper's pairing: selora_l1.00 vs cgan
# What must never reach a browser: a method's name, or a kind's as a word of its own (a random token may hold
# "gan" inside it by chance, never as a word: tokens are runs of letters, digits, '-' and '_').
METHOD_TEXT = re.compile("|".join([*map(re.escape, KINDS), r"(?<![\w-])(?:selora|lora|gan|stylegan3?)(?![\w-])"]),
                         re.IGNORECASE)


def names_a_method(text: str) -> bool:
    return METHOD_TEXT.search(text) is not None


def bytes_name_a_method(data: bytes) -> bool:
    """Whether binary data (an image) holds a method's name; case-sensitive, as short words turn up in
    compressed bytes by chance."""
    return any(name.encode() in data for name in KINDS)


def slice_like(generator: np.random.Generator, size: int, tumour: bool, rgb: bool) -> np.ndarray:
    """A grey ellipse with texture and, for a tumour, a bright blob: enough to look like a slice on screen."""
    rows, columns = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    head = (rows / 0.85) ** 2 + (columns / 0.7) ** 2 < 1
    texture = 0.1 * np.cos(9 * rows) * np.sin(7 * columns)
    image = head * (0.45 + texture) + 0.08 * generator.standard_normal((size, size))
    if tumour:
        centre = generator.uniform(-0.4, 0.4, 2)
        image += 0.5 * (((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) < 0.03)
    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return np.stack([pixels] * 3, axis=-1) if rgb else pixels


def write_png(path: Path, pixels: np.ndarray, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", text)
    Image.fromarray(pixels).save(path, pnginfo=info)


def study_inputs(root: Path, images_per_class: int = 12, test_slices_per_class: int = 10, size: int = 64) -> dict:
    """Generated sets (manifest + FID rows) of KINDS' methods and real slices, under `root`; the keyword
    arguments of `build_pack` that locate them."""
    generator = np.random.default_rng(0)
    manifests, fids = {}, {}
    for method, kind in KINDS.items():
        folder = root / "generate" / method
        folder.mkdir(parents=True)
        rows = []
        for index in range(2 * images_per_class):
            path = folder / f"{index:05d}.png"
            write_png(path, slice_like(generator, size, tumour=bool(index % 2), rgb=kind == "selora"),
                      f"{method} ({kind})")
            rows.append({"file": str(path), "prompt": "Brain MRI Flair", "label": index % 2, "seed": index})
        manifests[method] = folder / "manifest.csv"
        pd.DataFrame(rows).to_csv(manifests[method], index=False)
        fids[method] = root / "fid" / f"{method}.csv"
        fids[method].parent.mkdir(exist_ok=True)
        pd.DataFrame([{"dataset": "brats", "method": method, "metric": metric, "value": value, "lower": value - 1,
                       "upper": value + 1, "n": 2 * images_per_class}
                      for metric, value in (("fid", FIDS[method]), ("fid_healthy", 1.0))]).to_csv(fids[method],
                                                                                               index=False)
    slices = root / "slices"
    slices.mkdir()
    metadata = []
    for index in range(4 * test_slices_per_class):
        path = slices / f"case{index}.png"
        Image.fromarray(slice_like(generator, size, tumour=bool(index % 2), rgb=False)).save(path)
        metadata.append({"case": f"case{index}", "split": ("test", "train")[index // (2 * test_slices_per_class)],
                         "label": index % 2, "image": str(path)})
    pd.DataFrame(metadata).to_csv(slices / "metadata.csv", index=False)
    return {"kinds": dict(KINDS), "manifest_csvs": manifests, "fid_csvs": fids, "metadata_csv": slices / "metadata.csv"}


def pack_settings(**changes) -> PackSettings:
    section = {"pairing": "paper", "pairs_per_class": 4, "calibration_per_class": 9, "image_size": 64, "seed": 0,
               "question": "Which image is more anatomically accurate?",
               "power_goal": {"preference": 0.7, "power": 0.8}}
    return PackSettings.from_config({**section, **changes})


def make_pack(root: Path, **changes) -> Path:
    """A pack of the paper's pairing (4 pairs per class unless changed) in root/pack."""
    inputs = study_inputs(root / "inputs", images_per_class=max(12, 2 * changes.get("pairs_per_class", 4)))
    build_pack("brats", settings=pack_settings(**changes), out_dir=root / "pack", **inputs)
    return root / "pack"


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, position = [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        assert zlib.crc32(kind + chunk) == struct.unpack(">I", data[position + 8 + length:position + 12 + length])[0]
        chunks.append(kind.decode())
        position += 12 + length
    return chunks
