from pathlib import Path

from migros.jobs import start_job
from migros.prompts import GenerationPromptSettings, write_generation_prompts

start_job(snakemake.log[0], snakemake.threads)
write_generation_prompts(
    Path(snakemake.input[0]), GenerationPromptSettings.from_config(snakemake.params.settings), Path(snakemake.output[0])
)
