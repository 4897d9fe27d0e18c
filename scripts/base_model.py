from pathlib import Path

from migros.diffusion.base_model import BaseModelSettings, prepare_base_model
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
prepare_base_model(BaseModelSettings.from_config(snakemake.params.settings), Path(snakemake.output[0]))
