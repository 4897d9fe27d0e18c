from pathlib import Path

from migros.jobs import start_job
from migros.prompts import write_generation_prompts

start_job(snakemake.log[0], snakemake.threads)
write_generation_prompts(Path(snakemake.input[0]), snakemake.params.images, snakemake.params.seed, Path(snakemake.output[0]))
