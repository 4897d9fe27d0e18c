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
