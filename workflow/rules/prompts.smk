rule train_prompts:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        "results/{dataset}/prompts/train_prompts.csv",
    params:
        settings=prompt_settings,
    log:
        "results/logs/train_prompts/{dataset}.log",
    benchmark:
        "results/benchmarks/train_prompts/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/train_prompts.py"


# One file per training replicate: replicate k >= 1 (suffix @k) draws its prompts and image seeds from seed + k x
# images, so that replicates differ in their images as well as their training and their scores vary as independent
# runs do.
rule generation_prompts:
    wildcard_constraints:
        replicate=f"({REPLICATE_SEPARATOR}[1-9][0-9]*)?",
    input:
        "results/{dataset}/prompts/train_prompts.csv",
    output:
        "results/{dataset}/prompts/generation_prompts{replicate}.csv",
    params:
        settings=generation_prompt_settings,
    log:
        "results/logs/generation_prompts/{dataset}{replicate}.log",
    benchmark:
        "results/benchmarks/generation_prompts/{dataset}{replicate}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/generation_prompts.py"


# The slices in neither split: the non-members that the privacy audit's learned attack, and a privacy defence's proxy
# attack model, learn from (never audited).
rule proxy_non_members:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        "results/{dataset}/prompts/proxy_non_members.csv",
    params:
        prompts=prompt_settings,
        seed=lambda wildcards: dataset_config(wildcards)["split"]["seed"],
    log:
        "results/logs/proxy_non_members/{dataset}.log",
    benchmark:
        "results/benchmarks/proxy_non_members/{dataset}.tsv"
    conda:
        "../../envs/diffusion.yaml"  # migros.diffusion.privacy_defence imports torch
    script:
        "../../scripts/proxy_non_members.py"
