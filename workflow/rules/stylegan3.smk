# The paper's StyleGAN3 baseline (GPU only): methods of kind stylegan3 fine-tune the official NVlabs/stylegan3
# from the user's checkout and pretrained pickle, then generate into the same images/ + manifest.csv as the
# diffusion methods, so postprocess, FID, classifier and report take them like the rest.
#
# The published pickles are unconditional and train.py --resume cannot start a conditional network from them, so
# each class (healthy, tumour) gets its own unconditional network, resumed from the pickle, which generates that
# class's half of the images (migros.gan.stylegan3). A CPU pre-flight loads the pickle with the user's interpreter
# and checkout and stops, naming the config key to change, when the planned networks would not take it: before
# any GPU job waits in the queue.
#
# The rules run in envs/diffusion.yaml (Python 3.11, this package: the checks, the dataset folders, the manifest)
# and call the official dataset_tool.py, train.py and gen_images.py with the `python` of the method's entry, the
# interpreter of a conda env made once from envs/stylegan3.yaml: the official code needs Python 3.9 / PyTorch 1.9
# / CUDA 11.1 for its custom ops, which cannot share an environment with this package (docs/paper.md, "StyleGAN3
# baseline"). Snakemake's conda: directive takes one env per rule, hence the interpreter path in config.

STYLEGAN3_PATTERN = names_pattern(methods_of_kind(["stylegan3"]))
STYLEGAN3_CLASSES = ["healthy", "tumour"]  # label 0, 1: migros.gan.stylegan3.IMAGE_CLASSES (a test keeps them equal)


# Per dataset, not per method, although it checks the method's pickle: its params then hold only that dataset's
# image size, so listing the method in another dataset does not rerun it, and with it day-long training jobs.
rule stylegan3_preflight:
    wildcard_constraints:
        method=STYLEGAN3_PATTERN,
    output:
        report="results/{dataset}/stylegan3/{method}/preflight.json",
    params:
        method=method_entry,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
    log:
        "results/logs/stylegan3_preflight/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/stylegan3_preflight/{dataset}_{method}.tsv"
    threads: 1  # loads one pickle and builds the planned networks, no training
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/stylegan3_preflight.py"


rule stylegan3_train:
    wildcard_constraints:
        method=STYLEGAN3_PATTERN,
        image_class="|".join(STYLEGAN3_CLASSES),
    input:
        preflight="results/{dataset}/stylegan3/{method}/preflight.json",
        train_prompts="results/{dataset}/prompts/train_prompts.csv",
        prompts=generation_prompts,
    output:
        generated=directory("results/{dataset}/stylegan3/{method}/{image_class}/generated"),
        summary="results/{dataset}/stylegan3/{method}/{image_class}/summary.json",
    params:
        method=method_entry,
        work_dir="results/{dataset}/stylegan3/{method}/{image_class}",  # source folder, dataset.zip, training runs
    log:
        "results/logs/stylegan3_train/{dataset}_{method}_{image_class}.log",
    benchmark:
        "results/benchmarks/stylegan3_train/{dataset}_{method}_{image_class}.tsv"
    threads: 2  # train.py's 3 DataLoader workers feed the GPU; the cluster profile gives it 4
    resources:
        gpu=1,
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/stylegan3_train.py"


rule stylegan3_merge:
    wildcard_constraints:
        method=STYLEGAN3_PATTERN,
    input:
        prompts=generation_prompts,
        generated=expand("results/{{dataset}}/stylegan3/{{method}}/{image_class}/generated", image_class=STYLEGAN3_CLASSES),
        summaries=expand("results/{{dataset}}/stylegan3/{{method}}/{image_class}/summary.json", image_class=STYLEGAN3_CLASSES),
    output:
        images=directory("results/{dataset}/generate/{method}/images"),
        manifest="results/{dataset}/generate/{method}/manifest.csv",
        summary="results/{dataset}/stylegan3/{method}/summary.json",
    params:
        method=method_entry,
        image_classes=STYLEGAN3_CLASSES,  # in the order of the generated and summaries inputs
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
    log:
        "results/logs/stylegan3_merge/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/stylegan3_merge/{dataset}_{method}.tsv"
    threads: 1
    conda:
        "../../envs/diffusion.yaml"
    script:
        "../../scripts/stylegan3_merge.py"
