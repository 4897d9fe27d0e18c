rule slices:
    input:
        dataset_root,
    output:
        images=directory("results/{dataset}/slices/images"),
        masks=directory("results/{dataset}/slices/masks"),
        metadata="results/{dataset}/slices/metadata.csv",
        excluded="results/{dataset}/slices/excluded.csv",
    params:
        settings=slice_settings,
    log:
        "results/logs/slices/{dataset}.log",
    benchmark:
        "results/benchmarks/slices/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/slices.py"


rule dataset_overview:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
        excluded="results/{dataset}/slices/excluded.csv",
    output:
        figure=report(
            "results/{dataset}/slices/overview.png",
            caption="../report/dataset_overview.rst",
            category="Datasets",
            subcategory="{dataset}",
            labels={"figure": "examples and label balance"},
        ),
        summary=report(
            "results/{dataset}/slices/summary.html",
            caption="../report/dataset_summary.rst",
            category="Datasets",
            subcategory="{dataset}",
            labels={"figure": "counts and excluded cases"},
        ),
    log:
        "results/logs/dataset_overview/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset_overview/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dataset_overview.py"


# The positive control (datasets.<name>.split.reserve): real patients that no stage trains or tests on, written as
# a generated set that every evaluation stage scores as a method.
rule real_reserve:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        images=directory(f"results/{{dataset}}/generate/{REAL_RESERVE}/images"),
        manifest=f"results/{{dataset}}/generate/{REAL_RESERVE}/manifest.csv",
    params:
        prompts=prompt_settings,
    log:
        "results/logs/real_reserve/{dataset}.log",
    benchmark:
        "results/benchmarks/real_reserve/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/real_reserve.py"
