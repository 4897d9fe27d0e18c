# The paper's StyleGAN3 baseline (GPU only): methods of kind stylegan3 fine-tune the official NVlabs/stylegan3
# from the user's checkout and pretrained pickle, then generate into the same images/ + manifest.csv as the
# diffusion methods, so postprocess, FID, classifier and report take them like the rest.
#
# The rule runs in envs/diffusion.yaml (Python 3.11, this package: the GPU check, the dataset folder, the manifest)
# and calls the official dataset_tool.py, train.py and gen_images.py with the `python` of the method's entry, the
# interpreter of a conda env made once from envs/stylegan3.yaml: the official code needs Python 3.9 / PyTorch 1.9
# / CUDA 11.1 for its custom ops, which cannot share an environment with this package (README, "StyleGAN3
# baseline"). Snakemake's conda: directive takes one env per rule, hence the interpreter path in config.

rule stylegan3:
    wildcard_constraints:
        method=names_pattern(methods_of_kind(["stylegan3"])),
    input:
        train_prompts="results/{dataset}/prompts/train_prompts.csv",
        prompts="results/{dataset}/prompts/generation_prompts.csv",
    output:
        images=directory("results/{dataset}/generate/{method}/images"),
        manifest="results/{dataset}/generate/{method}/manifest.csv",
        summary="results/{dataset}/stylegan3/{method}/summary.json",
    params:
        method=method_entry,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
        work_dir="results/{dataset}/stylegan3/{method}",  # source folder, dataset.zip, training runs, raw images
    log:
        "results/logs/stylegan3/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/stylegan3/{dataset}_{method}.tsv"
    threads: 2  # train.py's 3 DataLoader workers feed the GPU; the cluster profile gives it 4
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/stylegan3.py"
