from pathlib import Path

from migros.evaluation.fid import run_inception_weights_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_inception_weights_stage(weights_path=snakemake.params.weights_path, cache_dir=Path(snakemake.output[0]))
