rule gan:
    wildcard_constraints:
        method=names_pattern(methods_of_kind(["gan"])),
    input:
        train_prompts="results/{dataset}/prompts/train_prompts.csv",
        prompts=generation_prompts,
    output:
        images=directory("results/{dataset}/generate/{method}/images"),
        manifest="results/{dataset}/generate/{method}/manifest.csv",
        generator="results/{dataset}/gan/{method}/generator.pt",
        loss="results/{dataset}/gan/{method}/loss.csv",
        summary="results/{dataset}/gan/{method}/summary.json",
    params:
        method=method_entry,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
        batch_size=config["generation"]["batch_size"],
    log:
        "results/logs/gan/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/gan/{dataset}_{method}.tsv"
    threads: 1  # small networks: two jobs side by side use 2 cores better
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/gan.py"
