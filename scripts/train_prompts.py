from pathlib import Path

from migros.jobs import start_job
from migros.prompts import write_train_prompts

start_job(snakemake.log[0], snakemake.threads)
write_train_prompts(Path(snakemake.input.metadata), snakemake.params.prompts, Path(snakemake.output[0]))
