"""Benchmark (not a test): how far the demo VAE's ceiling can move, measured on a finished default run.

Prints, per dataset, the FID of the real test slices blurred with a Gaussian of each `--blur` sigma (px) against
the unblurred ones (how much blur FID tolerates at the run's image size), then, for each `--variant`
(latent downsampling x VAE optimizer steps), a demo VAE trained from scratch exactly as `base_model` trains it:
its training seconds, the FID of its reconstructions of the test slices against them (the `vae_reconstruction`
FID, same n), the median share of lesion contrast it keeps (the `reconstruction_grid` metric) and the real-only
classifier's ROC AUC on the reconstructions beside its AUC on the originals (the `classifier_seed` condition
`vae_reconstruction`: the run's classifier settings, each seed's classifier trained once on the real training
slices and tested on both; mean over the seeds).

    python tests/benchmarks/vae_ceiling.py --run /path/to/finished/run [--variant 8:550 4:1000 ...] [--blur 0.5 1]
        [--seeds 0 1]

The run folder needs config/config.yaml, results/<dataset>/slices/, results/<dataset>/fid/real_test.npz and
results/fid/inception/.
"""

import argparse
import inspect
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import ImageFilter

from migros.devices import default_device
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.demo.corpus import build_demo_corpus
from migros.diffusion.demo.pretraining import pretrain_demo_model, train_vae
from migros.diffusion.reconstruct import write_reconstructions
from migros.evaluation.classifier import evaluate, real_slices, synthetic_images, train_classifier
from migros.evaluation.classifier_settings import ClassifierSettings
from migros.evaluation.fid import fid_from_features, image_features, load_inception, resolve_inception_weights
from migros.images import open_image
from migros.report.reconstruction_grid import contrast_kept, reconstruction_pairs

DATASETS = ("brats", "picai")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder of a finished default run")
    parser.add_argument("--variant", nargs="*", default=["8:550", "8:2000", "4:550", "4:1000"],
                        help="latent_downsampling:vae_steps")
    parser.add_argument("--blur", type=float, nargs="*", default=[0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="*", help="classifier seeds (default: the run config's)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    os.chdir(arguments.run)  # the slice metadata holds paths relative to the run folder
    device = default_device()
    inception = load_inception(resolve_inception_weights(None, Path("results/fid/inception")), device)
    size = arguments.image_size
    test_slices = {name: pd.read_csv(f"results/{name}/slices/metadata.csv").query("split == 'test'")
                   for name in DATASETS}
    references = {name: np.load(f"results/{name}/fid/real_test.npz")["features"] for name in DATASETS}

    def fid_of(files: list[str], name: str) -> float:
        return fid_from_features(image_features(files, inception, device, 32, 0, name), references[name])

    config = yaml.safe_load(Path("config/config.yaml").read_text())
    classifier_settings = ClassifierSettings.from_config({**config["classifier"], "image_size": size})
    seeds = classifier_settings.seeds if arguments.seeds is None else arguments.seeds
    classifiers = {name: [train_classifier(real_slices(f"results/{name}/slices/metadata.csv", "train", size),
                                           classifier_settings, seed, device, f"{name} real only seed {seed}")
                          for seed in seeds] for name in DATASETS}

    def mean_auc(name: str, images) -> float:
        return float(np.mean([evaluate(model, images, device)["auc"] for model in classifiers[name]]))

    for name in DATASETS:
        original_auc = mean_auc(name, real_slices(f"results/{name}/slices/metadata.csv", "test", size))
        print(f"{name}: real-only classifier AUC on the real test slices {original_auc:.3f} (seeds {list(seeds)})",
              flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="vae_ceiling_"))
    for sigma in arguments.blur:
        scores = []
        for name in DATASETS:
            files = []
            for index, path in enumerate(test_slices[name].image):
                files.append(str(scratch / f"blur_{name}_{index}.png"))
                open_image(path, "L", (size, size)).filter(ImageFilter.GaussianBlur(sigma)).save(files[-1])
            scores.append(f"{name} FID {fid_of(files, name):.1f}")
        print(f"real test slices blurred, sigma {sigma} px: {', '.join(scores)}", flush=True)

    # base_model's VAE stage as pretrain_demo_model runs it, with that function's own defaults
    defaults = {name: parameter.default for name, parameter in inspect.signature(pretrain_demo_model).parameters.items()}
    corpus = torch.from_numpy(build_demo_corpus(3000, size, 0, show_progress=False).images).unsqueeze(1)
    for variant in arguments.variant:
        downsampling, steps = (int(part) for part in variant.split(":"))
        pipeline = build_demo_pipeline(image_size=size, latent_downsampling=downsampling, seed=0).to(device)
        started = time.perf_counter()
        train_vae(pipeline.vae, corpus, steps, defaults["vae_batch_size"], defaults["vae_lr"],
                  min(defaults["vae_crop_size"], size), defaults["kl_weight"], defaults["warmup_steps"],
                  torch.Generator().manual_seed(0), device, show_progress=False)
        seconds = time.perf_counter() - started
        scores = []
        for name in DATASETS:
            manifest = scratch / f"{variant.replace(':', '_')}_{name}.csv"
            write_reconstructions(pipeline, test_slices[name], size, scratch / manifest.stem, manifest)
            kept, _ = contrast_kept(reconstruction_pairs(manifest, Path(f"results/{name}/slices/metadata.csv")))
            fid = fid_of(pd.read_csv(manifest).file.tolist(), name)
            auc = mean_auc(name, synthetic_images(manifest, size))
            scores.append(f"{name} FID {fid:.1f}, lesion contrast kept {kept:.2f}, AUC on reconstructions {auc:.3f}")
        parameters = sum(parameter.numel() for parameter in pipeline.vae.parameters())
        print(f"{downsampling}x VAE ({parameters:,} parameters), {steps} steps in {seconds:.0f} s: {'; '.join(scores)}",
              flush=True)


if __name__ == "__main__":
    main()
