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


rule generation_prompts:
    input:
        "results/{dataset}/prompts/train_prompts.csv",
    output:
        "results/{dataset}/prompts/generation_prompts.csv",
    params:
        settings=generation_prompt_settings,
    log:
        "results/logs/generation_prompts/{dataset}.log",
    benchmark:
        "results/benchmarks/generation_prompts/{dataset}.tsv"
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
