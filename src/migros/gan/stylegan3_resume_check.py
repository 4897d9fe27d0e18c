"""Pre-flight of the StyleGAN3 baseline: do the networks that train.py will build accept the user's pickle?

train.py --resume builds fresh networks and copies the pickle's tensors into them by name with `tensor.copy_`,
without a shape check and skipping names the pickle lacks (torch_utils/misc.py, copy_params_and_buffers). A
tensor of another shape stops training on the GPU after hours in the queue ("The size of tensor a (1024) must
match the size of tensor b (512)"), and a missing name silently stays at its random initial value: StyleGAN3 names
its synthesis layers by their channel count, so with another cbase whole layers would start from scratch.

This check builds the planned networks exactly as train.py would, from train.py's own option parsing (its main()
with launch_training intercepted) and training_loop.py's construction, loads the pickle with the official
legacy.load_network_pkl, and compares every tensor of G, D and G_ema by name and shape. A mismatch is reported with
the config key of the method that would fix it.

It runs in the official code's own environment (envs/stylegan3.yaml: Python 3.9, PyTorch 1.9) with the user's
checkout on sys.path, as a script started by migros.gan.stylegan3.run_stylegan3_preflight:

    python stylegan3_resume_check.py --checkout DIR --resume-pkl FILE --resolution N --where methods.NAME \\
        --report OUT.json -- <train.py options>

so it imports only the standard library, torch, Pillow and the official code, and keeps to Python 3.9 (a test
parses it as 3.9). The report holds {"accepted": true, "pickle": ..., "planned": ..., "tensors_compared": n} or
{"accepted": false, "error": message}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

NETWORKS = ("G", "D", "G_ema")  # what train.py resumes from the pickle (training_loop.py)
# Keys of a `kind: stylegan3` method that shape the networks, as architecture() reads them back from networks.
ARCHITECTURE_KEYS = ("cfg", "cbase", "cmax", "map_depth", "resolution")
SHOWN_TENSORS = 5  # tensors listed in an error; the rest are counted


class ResumeMismatch(ValueError):
    """The planned networks would not take the pickle's tensors; the message names the config key to change."""


def use_checkout(checkout: str) -> None:
    """Make the official modules (train, legacy, dnnlib, torch_utils, training) importable from `checkout`. A
    process checks one checkout: modules imported once stay those of the first."""
    checkout = os.path.abspath(checkout)
    if checkout not in sys.path:
        sys.path.insert(0, checkout)


def load_pickle(resume_pkl: str, where: str) -> dict:
    """The pickle's networks as train.py loads them for --resume (legacy.load_network_pkl)."""
    import legacy

    try:
        with open(resume_pkl, "rb") as file:
            return legacy.load_network_pkl(file)
    except Exception as error:  # any failure here is the file's: say which file and why
        raise ResumeMismatch(
            f"{where}.resume_pkl: {resume_pkl} is not a network pickle that the official code loads "
            f"({type(error).__name__}: {error})"
        ) from error


def planned_networks(train_options: list[str], resolution: int, where: str) -> dict:
    """G, D and G_ema as train.py with `train_options` would build them for a training set of RGB images of
    `resolution`² px (what dataset_tool.py makes of the slices): train.py parses the options into its config, and
    the networks are constructed from it as training_loop.py does."""
    import click
    import dnnlib
    import train
    from PIL import Image

    configs = []
    launch_training = train.launch_training
    train.launch_training = lambda c, desc, outdir, dry_run: configs.append(c)  # the parsed config, not a run
    try:
        with tempfile.TemporaryDirectory() as folder:
            # a one-image training set: train.py reads the resolution, channels and labels from it
            Image.new("RGB", (resolution, resolution)).save(os.path.join(folder, "00000.png"))
            try:
                train.main([f"--outdir={folder}", f"--data={folder}", *train_options], standalone_mode=False)
            except click.ClickException as error:
                raise ResumeMismatch(
                    f"{where}: train.py refuses the planned options {' '.join(train_options)}: {error.format_message()}"
                ) from error
            (config,) = configs
            training_set = dnnlib.util.construct_class_by_name(**config.training_set_kwargs)
            common = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                          img_channels=training_set.num_channels)
    finally:
        train.launch_training = launch_training
    generator = dnnlib.util.construct_class_by_name(**config.G_kwargs, **common).train().requires_grad_(False)
    discriminator = dnnlib.util.construct_class_by_name(**config.D_kwargs, **common).train().requires_grad_(False)
    return {"G": generator, "D": discriminator, "G_ema": generator}  # G_ema is a copy of G


def architecture(networks: dict) -> dict:
    """The method's architecture keys as the networks record them (persistent classes keep their init_kwargs),
    plus the label and image channel counts, which no key sets."""
    generator, discriminator = networks["G"], networks["D"]
    if hasattr(generator.synthesis, "input"):  # StyleGAN3's Fourier-feature input, as gen_images.py tells them apart
        # train.py's stylegan3-r builds 1x1 convolutions; stylegan3-t keeps the default 3x3
        cfg = "stylegan3-r" if generator.init_kwargs.get("conv_kernel", 3) == 1 else "stylegan3-t"
    else:
        cfg = "stylegan2"
    return {
        "cfg": cfg,
        # the discriminator's: train.py doubles the generator's for stylegan3-r
        "cbase": discriminator.init_kwargs.get("channel_base"),
        "cmax": discriminator.init_kwargs.get("channel_max"),
        "map_depth": generator.mapping.num_layers,
        "resolution": generator.img_resolution,
        "c_dim": generator.c_dim,
        "img_channels": generator.img_channels,
    }


def tensor_shapes(network) -> dict:
    from torch_utils import misc

    return {name: tuple(tensor.shape) for name, tensor in misc.named_params_and_buffers(network)}


def tensor_mismatches(resumed: dict, planned: dict) -> list[str]:
    """Every tensor that copy_params_and_buffers would not copy one to one: of another shape (listed first: what
    stops train.py), only in the planned network (left untrained), or only in the pickle (dropped)."""
    reshaped, untrained, dropped = [], [], []
    for network in NETWORKS:
        theirs, ours = tensor_shapes(resumed[network]), tensor_shapes(planned[network])
        for name, shape in ours.items():
            if name not in theirs:
                untrained.append(f"{network}.{name} {list(shape)} is not in the pickle")
            elif theirs[name] != shape:
                reshaped.append(f"{network}.{name} is {list(theirs[name])} in the pickle, {list(shape)} planned")
        dropped += [f"{network}.{name} {list(theirs[name])} is only in the pickle" for name in theirs if name not in ours]
    return reshaped + untrained + dropped


def mismatch_reasons(resumed: dict, planned: dict, where: str) -> list[str]:
    """What differs between the pickle's networks and the planned ones, each with the key that changes it."""
    theirs, ours = architecture(resumed), architecture(planned)
    reasons = []
    if theirs["c_dim"] and not ours["c_dim"]:
        reasons.append(
            f"{where}.resume_pkl: the pickle holds a conditional network ({theirs['c_dim']} classes), and the "
            f"plan trains one unconditional network per class (train.py --cond=False); use an unconditional "
            f"pickle such as stylegan3-t-ffhqu-256x256.pkl"
        )
    elif ours["c_dim"] != theirs["c_dim"]:
        reasons.append(
            f"{where}: the planned networks are conditional ({ours['c_dim']} classes, train.py --cond=True) and "
            f"the pickle's are not: their mapping network's first layer takes z and the embedded label; train "
            f"one unconditional network per class (--cond=False)"
        )
    for key in ARCHITECTURE_KEYS:
        if theirs[key] != ours[key]:
            reasons.append(
                f"{where}.{key}: the pickle's networks have {key} {theirs[key]}, the planned ones {ours[key]}: "
                f"set {key}: {theirs[key]}"
            )
    if theirs["img_channels"] != ours["img_channels"]:
        reasons.append(
            f"{where}.resume_pkl: the pickle's networks make {theirs['img_channels']}-channel images and the "
            f"training images are RGB; use a pickle of an RGB dataset"
        )
    if not reasons:
        reasons.append(
            f"{where}.resume_pkl: the pickle's networks differ from the planned {ours['cfg']} ones in a way that no "
            f"setting of the method covers; use a pickle that train.py made with --cfg={ours['cfg']}"
        )
    return reasons


def require_same_tensors(resumed: dict, planned: dict, where: str) -> int:
    """The number of tensors compared, when every tensor of the pickle's G, D and G_ema has its planned name and
    shape; otherwise ResumeMismatch naming the keys to change and the first differing tensors."""
    mismatches = tensor_mismatches(resumed, planned)
    if mismatches:
        shown = "; ".join(mismatches[:SHOWN_TENSORS])
        more = f" and {len(mismatches) - SHOWN_TENSORS} more" if len(mismatches) > SHOWN_TENSORS else ""
        raise ResumeMismatch(
            "; ".join(mismatch_reasons(resumed, planned, where))
            + f". train.py --resume would fail or leave tensors untrained, as {len(mismatches)} tensors differ: "
            + shown + more
        )
    return sum(len(tensor_shapes(planned[network])) for network in NETWORKS)


def check_resume(checkout: str, resume_pkl: str, resolution: int, train_options: list[str], where: str) -> dict:
    """The report of a pickle that the planned networks accept (see the module docstring); ResumeMismatch otherwise."""
    use_checkout(checkout)
    resumed = load_pickle(resume_pkl, where)
    planned = planned_networks(train_options, resolution, where)
    tensors = require_same_tensors(resumed, planned, where)
    return {"accepted": True, "resume_pkl": resume_pkl, "pickle": architecture(resumed),
            "planned": architecture(planned), "tensors_compared": tensors}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", required=True, help="the user's clone of NVlabs/stylegan3")
    parser.add_argument("--resume-pkl", required=True, help="the pretrained pickle train.py resumes from")
    parser.add_argument("--resolution", type=int, required=True, help="side of the training images, px")
    parser.add_argument("--where", required=True, help="config path of the method, named in errors")
    parser.add_argument("--report", required=True, help="JSON file the result is written to")
    parser.add_argument("train_options", nargs=argparse.REMAINDER, help="-- then train.py's options of the plan")
    args = parser.parse_args(argv)
    options = args.train_options[1:] if args.train_options[:1] == ["--"] else args.train_options
    try:
        report = check_resume(args.checkout, args.resume_pkl, args.resolution, options, args.where)
    except ResumeMismatch as error:
        report = {"accepted": False, "error": str(error)}
    with open(args.report, "w") as file:
        json.dump(report, file, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
