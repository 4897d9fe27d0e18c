from pathlib import Path

from migros.jobs import start_job
from migros.prompts import PromptSettings, write_train_prompts

start_job(snakemake.log[0], snakemake.threads)
write_train_prompts(
    Path(snakemake.input.metadata), PromptSettings.from_config(snakemake.params.settings), Path(snakemake.output[0])
)
