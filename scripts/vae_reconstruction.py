from pathlib import Path

from migros.diffusion.reconstruct import run_reconstruction_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_reconstruction_stage(
    base_model_dir=Path(snakemake.input.base_model),
    metadata_csv=Path(snakemake.input.metadata),
    split=snakemake.params.split,
    image_size=snakemake.params.image_size,
    images_dir=Path(snakemake.output.images),
    manifest_csv=Path(snakemake.output.manifest),
)
