import re

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

DATASETS = list(config["datasets"])
NO_ADAPTATION = "no_adaptation"  # generation with the base model alone: the lower reference


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(re.escape(name) for name in [NO_ADAPTATION, *config["methods"]]),


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def uses_demo(dataset):
    return config["datasets"][dataset]["root"] == "demo"


def dataset_root(wildcards):
    """The folder the slice stage reads: the phantoms of rule demo_data, or the user's dataset."""
    if uses_demo(wildcards.dataset):
        return f"results/{wildcards.dataset}/demo_data"
    return config["datasets"][wildcards.dataset]["root"]


def slice_settings(wildcards):
    """Only what changes the slices, so that editing e.g. prompt thresholds does not rerun this stage."""
    settings = dataset_config(wildcards)
    keys = ("loader", "image_size", "intensity_percentiles", "field_of_view_mm", "split")
    return {key: settings[key] for key in keys if key in settings}


def methods_of(dataset):
    """The fine-tuning methods run on a dataset (names from config `methods`)."""
    return config["datasets"][dataset]["methods"]


def finetune_settings(method):
    """Training settings shared by all methods, with the method's own overrides (e.g. epochs)."""
    overrides = {key: config["methods"][method][key] for key in ("epochs",) if key in config["methods"][method]}
    return {**config["finetune"], **overrides}


def generation_inputs(wildcards):
    inputs = {
        "base_model": "results/base_model",
        "prompts": f"results/{wildcards.dataset}/prompts/generation_prompts.csv",
    }
    if wildcards.method != NO_ADAPTATION:
        inputs["adapter"] = f"results/{wildcards.dataset}/finetune/{wildcards.method}/adapter"
    return inputs


def all_outputs():
    outputs = expand(
        [
            "results/{dataset}/prompts/train_prompts.csv",
            "results/{dataset}/slices/overview.png",
            "results/{dataset}/slices/summary.html",
        ],
        dataset=DATASETS,
    )
    for dataset in DATASETS:
        for method in [NO_ADAPTATION, *methods_of(dataset)]:
            outputs += [
                f"results/{dataset}/generate/{method}/manifest.csv",
                f"results/{dataset}/generate/{method}/samples.png",
            ]
    return outputs
