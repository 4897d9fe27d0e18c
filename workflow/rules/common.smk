from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

DATASETS = list(config["datasets"])


wildcard_constraints:
    dataset="|".join(DATASETS),


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


def all_outputs():
    return expand(
        [
            "results/{dataset}/prompts/train_prompts.csv",
            "results/{dataset}/prompts/generation_prompts.csv",
            "results/{dataset}/slices/overview.png",
            "results/{dataset}/slices/summary.html",
        ],
        dataset=DATASETS,
    )
