from pathlib import Path

from migros.gan.conditional import GanSettings, run_gan_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_gan_stage(
    train_prompts_csv=Path(snakemake.input.train_prompts),
    generation_prompts_csv=Path(snakemake.input.prompts),
    settings=GanSettings.from_method(snakemake.params.method, snakemake.wildcards.method),
    image_size=snakemake.params.image_size,
    batch_size=snakemake.params.batch_size,
    images_dir=Path(snakemake.output.images),
    manifest_csv=Path(snakemake.output.manifest),
    generator_path=Path(snakemake.output.generator),
    loss_csv=Path(snakemake.output.loss),
    summary_json=Path(snakemake.output.summary),
)
