from pathlib import Path

from migros.diffusion.base_model import prepare_base_model
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
prepare_base_model(snakemake.params.source, snakemake.params.demo, Path(snakemake.output[0]))
