from pathlib import Path

from migros.evaluation.postprocess import PostprocessSettings, run_postprocess_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_postprocess_stage(
    manifest_csv=Path(snakemake.input.manifest),
    settings=PostprocessSettings.from_config(snakemake.params.settings),
    images_dir=Path(snakemake.output.images),
    output_manifest_csv=Path(snakemake.output.manifest),
)
