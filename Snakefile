# MIGROS: adapt a latent diffusion model to small MRI sets with LoRA / SeLoRA, generate, evaluate.
# Default: `snakemake --cores 2` runs the embedded offline demo (config/config.yaml).
# The paper: `snakemake --configfile config/paper.yaml ...` (see README, "Reproducing the paper").

from snakemake.utils import min_version

min_version("9.0")


# Snakemake merges a --configfile into the configfile directive's dict key by key, so e.g. the demo's methods
# would leak into config/paper.yaml; the default is therefore read only when no --configfile is given.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_data.smk"
include: "workflow/rules/slices.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/gan.smk"
include: "workflow/rules/stylegan3.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/reader_study.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
