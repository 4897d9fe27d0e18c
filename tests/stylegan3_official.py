"""Small StyleGAN networks and snapshot pickles made by NVIDIA's official code, for the StyleGAN3 pre-flight's tests.

The official source (NVlabs/stylegan3, NVIDIA Source Code License) lies in shared/third_party/stylegan3 beside the
repository; its networks build and run on a CPU. The networks here are built with the official classes from the
keyword arguments that train.py gives them for its options, written independently of the pre-flight (which parses
the options with train.py itself), and saved as training_loop.py saves a snapshot: a pickle of a dict with G, D and
G_ema (evaluation copies on the CPU), the augmentation pipe and the training set's options. z and w have train.py's
512 dimensions; a few channels at 16 px keep a pickle at ~8 MB and its building under a second.
"""

import copy
import importlib.util
import pickle
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_CHECKOUT = REPO.parent / "shared/third_party/stylegan3"
# the tests' planned architecture: at 16 px, cbase 256 and cmax 64 give layers of 16 to 64 channels, which another
# cbase or cmax changes
TINY = {"cfg": "stylegan3-t", "resolution": 16, "cbase": 256, "cmax": 64, "map_depth": None}


def require_official_code() -> Path:
    """The official checkout, with its modules importable; the calling test skips, saying why, without it."""
    if not (OFFICIAL_CHECKOUT / "train.py").is_file():
        pytest.skip(f"NVIDIA's official StyleGAN3 code is not at {OFFICIAL_CHECKOUT} (shared/third_party/README.md)")
    if importlib.util.find_spec("pkg_resources") is None:
        pytest.fail("the official StyleGAN3 code imports setuptools' pkg_resources (torch_utils/ops/conv2d_gradfix.py), "
                    "which setuptools 82 and later lack: install the test extra's setuptools pin")
    if str(OFFICIAL_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(OFFICIAL_CHECKOUT))
    return OFFICIAL_CHECKOUT


def official_networks(cfg: str, resolution: int, cbase: int, cmax: int, map_depth: int | None, c_dim: int = 0) -> dict:
    """{"G", "D", "G_ema"} of RGB images at `resolution`, as train.py builds them for --cfg, --cbase, --cmax and
    --map-depth (None: its default) and a training set of c_dim classes (0: --cond=False)."""
    require_official_code()
    from training import networks_stylegan2, networks_stylegan3

    common = {"c_dim": c_dim, "img_resolution": resolution, "img_channels": 3}
    mapping = {"num_layers": map_depth or (8 if cfg == "stylegan2" else 2)}
    if cfg == "stylegan2":
        generator = networks_stylegan2.Generator(
            z_dim=512, w_dim=512, mapping_kwargs=mapping, channel_base=cbase, channel_max=cmax, **common)
    else:
        rotation = {"conv_kernel": 1, "use_radial_filters": True} if cfg == "stylegan3-r" else {}
        doubled = 2 if cfg == "stylegan3-r" else 1  # train.py doubles the generator's channels for stylegan3-r
        generator = networks_stylegan3.Generator(
            z_dim=512, w_dim=512, mapping_kwargs=mapping, channel_base=cbase * doubled, channel_max=cmax * doubled,
            **rotation, **common)
    discriminator = networks_stylegan2.Discriminator(channel_base=cbase, channel_max=cmax, **common)
    # as training_loop.py holds them: gradients are switched on per phase of training
    generator, discriminator = (network.train().requires_grad_(False) for network in (generator, discriminator))
    return {"G": generator, "D": discriminator, "G_ema": copy.deepcopy(generator).eval()}


def save_snapshot(path: Path, c_dim: int = 0, **architecture) -> Path:
    """A network pickle as training_loop.py writes network-snapshot-*.pkl, of the TINY architecture with
    `architecture`'s changes."""
    architecture = {**TINY, **architecture}
    snapshot = {
        **official_networks(**architecture, c_dim=c_dim),
        "augment_pipe": None,
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "dataset.zip",
                                "use_labels": c_dim > 0, "max_size": 8, "xflip": False,
                                "resolution": architecture["resolution"], "random_seed": 0},
    }
    for key, value in snapshot.items():
        if hasattr(value, "requires_grad_"):  # the networks, as training_loop.py copies them for the pickle
            snapshot[key] = copy.deepcopy(value).eval().requires_grad_(False).cpu()
    with open(path, "wb") as file:
        pickle.dump(snapshot, file)
    return path
