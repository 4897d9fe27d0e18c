from pathlib import Path

from migros.diffusion.privacy_defence import write_proxy_non_members
from migros.jobs import start_job
from migros.prompts import PromptSettings

start_job(snakemake.log[0], snakemake.threads)
write_proxy_non_members(
    Path(snakemake.input.metadata), PromptSettings.from_config(snakemake.params.prompts), snakemake.params.seed,
    Path(snakemake.output[0]),
)
