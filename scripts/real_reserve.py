from pathlib import Path

from migros.data.reserve import write_reserve_set
from migros.jobs import start_job
from migros.prompts import PromptSettings

start_job(snakemake.log[0], snakemake.threads)
write_reserve_set(
    Path(snakemake.input.metadata), PromptSettings.from_config(snakemake.params.prompts),
    Path(snakemake.output.images), Path(snakemake.output.manifest),
)
