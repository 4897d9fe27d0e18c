from pathlib import Path

from migros.jobs import start_job
from migros.prompts import write_prompt_stage

start_job(snakemake.log[0], snakemake.threads)
write_prompt_stage(
    metadata_csv=Path(snakemake.input.metadata),
    train_csv=Path(snakemake.output.train),
    generation_csv=Path(snakemake.output.generation),
    settings=snakemake.params.prompts,
    n_images=snakemake.params.generation["images"],
    seed=snakemake.params.generation["seed"],
)
