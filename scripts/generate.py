from pathlib import Path

from migros.diffusion.generate import GenerationSettings, run_generate_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_generate_stage(
    base_model_dir=Path(snakemake.input.base_model),
    adapter_dir=Path(snakemake.input.adapter) if "adapter" in snakemake.input.keys() else None,
    prompts_csv=Path(snakemake.input.prompts),
    settings=GenerationSettings.from_config(snakemake.params.settings),
    image_size=snakemake.params.image_size,
    images_dir=Path(snakemake.output.images),
    manifest_csv=Path(snakemake.output.manifest),
)
