"""Benchmark (not a test): seconds per optimizer step (batch 32) of the ResNet-18 tumour classifier on random
images, the demo's size of a `real+{method}` condition (40 real + 1000 synthetic slices), plus one prediction pass.

    python tests/benchmarks/classifier_speed.py [--images 1080] [--size 64] [--threads 2] [--steps 30]
"""

import argparse
import time

import torch

from migros.devices import default_device
from migros.evaluation.classifier import ImageSet, predict_probabilities, train_classifier
from migros.evaluation.classifier_settings import ClassifierSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1080)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (arguments.images, 1, arguments.size, arguments.size), dtype=torch.uint8, generator=generator)
    train = ImageSet(images, (torch.arange(arguments.images) % 2).float())
    settings = ClassifierSettings.from_config({
        "pretrained": "none", "budget": {"steps": arguments.steps}, "batch_size": 32, "learning_rate": 1e-4,
        "seeds": [0], "image_size": arguments.size, "blur": {"kernel_size": 3, "sigma": [0.1, 1.0], "probability": 0.5},
    })
    device = default_device()
    start, start_cpu = time.perf_counter(), time.process_time()
    model = train_classifier(train, settings, seed=0, device=device)
    trained, trained_cpu = time.perf_counter(), time.process_time()
    predict_probabilities(model, images, device)
    predicted, predicted_cpu = time.perf_counter(), time.process_time()
    # CPU seconds (all threads) tell the cost apart from waiting on other processes on a shared machine.
    print(f"{device}, {arguments.threads} threads, {arguments.images} images of {arguments.size} px: per optimizer step "
          f"{(trained - start) / arguments.steps:.2f} s wall, {(trained_cpu - start_cpu) / arguments.steps:.2f} s CPU; "
          f"predicting all {predicted - trained:.2f} s wall, {predicted_cpu - trained_cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
