rule demo_data:
    output:
        directory("results/{dataset}/demo_data"),
    params:
        settings=phantom_settings,
    log:
        "results/logs/demo_data/{dataset}.log",
    benchmark:
        "results/benchmarks/demo_data/{dataset}.tsv"
    # brain phantoms are written by one process per thread; it runs beside or right after the base model, and every
    # later stage waits for both
    threads: lambda wildcards: 2 if dataset_config(wildcards)["loader"] == "brats" else 1
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/demo_data.py"
