"""Benchmark (not a test): is the sampler's guidance scale why a method's FID is what it is? Measured on a finished
run: for each method and guidance scale, the first `--images` generation prompts (half tumour, half healthy) are
sampled with the run's `generate` stage code and config (only the guidance scale changed), scored with its `fid`
stage code against the real features of the run's `fid.reference_split` (no bootstrap), and labelled by the run's
real-only classifier (one per seed, trained as `classifier_seed` trains it) for prompt fidelity.

    python tests/benchmarks/guidance_sweep.py --run /path/to/finished/run --dataset brats
        [--methods no_adaptation lora_r4] [--guidance 1 2 5] [--images 100] [--seeds 0] [--threads 1]

FID at 100 images is biased upwards (compare rows with each other, not with the pipeline's 200-image FID).
"""

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

from migros.devices import default_device
from migros.diffusion.generate import GenerationSettings, run_generate_stage
from migros.evaluation.classifier import (
    predict_probabilities, prompt_fidelity, real_slices, synthetic_images, train_classifier,
)
from migros.evaluation.classifier_settings import ClassifierSettings
from migros.evaluation.fid import FidSettings, run_fid_stage

NO_ADAPTATION = "no_adaptation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--dataset", default="brats")
    parser.add_argument("--methods", nargs="*", default=[NO_ADAPTATION, "lora_r4"])
    parser.add_argument("--guidance", type=float, nargs="*", default=[1.0, 2.0, 5.0])
    parser.add_argument("--images", type=int, default=100, help="even; half tumour and half healthy prompts")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0], help="classifier seeds for prompt fidelity")
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    os.chdir(arguments.run)  # the run's manifests and metadata hold paths relative to its folder
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    dataset, size = arguments.dataset, config["datasets"][arguments.dataset]["image_size"]
    results = Path("results") / dataset
    scratch = Path(tempfile.mkdtemp(prefix="guidance_sweep_"))

    prompts = pd.read_csv(results / "prompts/generation_prompts.csv")
    prompts = prompts.groupby("label", sort=False).head(arguments.images // 2).sort_values("index")
    prompts.to_csv(scratch / "prompts.csv", index=False)
    fid_section = {key: value for key, value in config["fid"].items() if key != "reference_split"}
    fid_settings = FidSettings.from_config({**fid_section, "max_generated": arguments.images, "bootstrap_resamples": 0,
                                            "weights_cache_dir": "results/fid/inception"})
    reference = results / f"fid/real_{config['fid']['reference_split']}.npz"
    classifier_settings = ClassifierSettings.from_config({**config["classifier"], "image_size": size})
    device = default_device()
    train = real_slices(results / "slices/metadata.csv", "train", size)
    classifiers = [train_classifier(train, classifier_settings, seed, device, f"real only seed {seed}")
                   for seed in arguments.seeds]

    sampler = {key: value for key, value in config["generation"].items() if key not in ("images", "seed")}
    rows = []
    for method in arguments.methods:
        adapter = None if method == NO_ADAPTATION else results / f"finetune/{method}/adapter"
        for guidance in arguments.guidance:
            name = f"{method}_guidance_{guidance:g}"
            run_generate_stage(Path("results/base_model"), adapter, scratch / "prompts.csv",
                               GenerationSettings.from_config({**sampler, "guidance_scale": guidance}), size,
                               scratch / name, scratch / f"{name}.csv")
            run_fid_stage(scratch / f"{name}.csv", reference, fid_settings, scratch / f"{name}_fid.csv",
                          scratch / f"{name}_fid.json", dataset, method)
            scores = pd.read_csv(scratch / f"{name}_fid.csv").set_index("metric").value
            images = synthetic_images(scratch / f"{name}.csv", size)
            fidelity = pd.DataFrame([prompt_fidelity(images.labels.numpy(),
                                                     predict_probabilities(model, images.images, device))
                                     for model in classifiers]).mean()
            rows.append({"method": method, "guidance": guidance, "fid": scores["fid"],
                         "fid_tumour": scores["fid_tumour"], "fid_healthy": scores["fid_healthy"],
                         "fidelity_tumour_prompts": fidelity["tumour_recall_on_tumour_prompts"],
                         "fidelity_healthy_prompts": fidelity["healthy_recall_on_healthy_prompts"]})
            print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    print(f"\n{dataset}, {arguments.images} images per row, classifier seeds {arguments.seeds}:")
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    print(f"images in {scratch}")


if __name__ == "__main__":
    main()
