rule base_model:
    output:
        directory("results/base_model"),
    params:
        settings=base_model_settings,
    log:
        "results/logs/base_model/base_model.log",
    benchmark:
        "results/benchmarks/base_model/base_model.tsv"
    threads: 2
    priority: 50  # the head of the longest path: every fine-tune, generation and audit waits for it
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/base_model.py"


rule finetune:
    wildcard_constraints:
        method=ADAPTED_PATTERN,
    input:
        unpack(finetune_inputs),
    output:
        adapter=directory("results/{dataset}/finetune/{method}/adapter"),
        loss="results/{dataset}/finetune/{method}/loss.csv",
        rank_history="results/{dataset}/finetune/{method}/rank_history.csv",
        summary="results/{dataset}/finetune/{method}/summary.json",
    params:
        method=method_entry,
        settings=training_settings,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
        checkpoint_dir="results/{dataset}/finetune/{method}/checkpoint",
    log:
        "results/logs/finetune/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/finetune/{dataset}_{method}.tsv"
    threads: 1  # batches of a few images gain little from a second thread; two fine-tunes side by side do
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/finetune.py"


rule generate:
    wildcard_constraints:
        method=DIFFUSION_PATTERN,
    input:
        unpack(generation_inputs),
    output:
        images=directory("results/{dataset}/generate/{method}/images"),
        manifest="results/{dataset}/generate/{method}/manifest.csv",
    params:
        settings=generation_settings,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
    log:
        "results/logs/generate/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/generate/{dataset}_{method}.tsv"
    threads: 1  # jobs side by side use 2 cores better than one job on both
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/generate.py"



rule vae_reconstruction:
    input:
        base_model="results/base_model",
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        images=directory("results/{dataset}/vae_reconstruction/images"),
        manifest="results/{dataset}/vae_reconstruction/manifest.csv",
    params:
        split="test",  # the slices the classifier is tested on: do their lesions survive the VAE?
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
    log:
        "results/logs/vae_reconstruction/{dataset}.log",
    benchmark:
        "results/benchmarks/vae_reconstruction/{dataset}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/vae_reconstruction.py"
