from pathlib import Path

from migros.gan.stylegan3 import StyleGan3Settings, run_stylegan3_class_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_stylegan3_class_stage(
    settings=StyleGan3Settings.from_method(snakemake.params.method, snakemake.wildcards.method),
    name=snakemake.wildcards.method,
    image_class=snakemake.wildcards.image_class,
    train_csv=Path(snakemake.input.train_prompts),
    prompts_csv=Path(snakemake.input.prompts),
    work_dir=Path(snakemake.params.work_dir),
    generated_dir=Path(snakemake.output.generated),
    summary_json=Path(snakemake.output.summary),
)
