from pathlib import Path

from migros.diffusion.base_model import prepare_base_model
from migros.logs import log_to_file

log_to_file(snakemake.log[0])
prepare_base_model(snakemake.params.source, snakemake.params.demo, Path(snakemake.output[0]))
