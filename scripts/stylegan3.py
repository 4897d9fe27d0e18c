from pathlib import Path

from migros.gan.stylegan3 import StyleGan3Settings, run_stylegan3_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_stylegan3_stage(
    settings=StyleGan3Settings.from_method(snakemake.params.method, snakemake.wildcards.method),
    name=snakemake.wildcards.method,
    train_csv=Path(snakemake.input.train_prompts),
    prompts_csv=Path(snakemake.input.prompts),
    image_size=snakemake.params.image_size,
    work_dir=Path(snakemake.params.work_dir),
    images_dir=Path(snakemake.output.images),
    manifest_csv=Path(snakemake.output.manifest),
    summary_json=Path(snakemake.output.summary),
)
