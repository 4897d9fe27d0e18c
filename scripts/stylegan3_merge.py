from pathlib import Path

from migros.gan.stylegan3 import StyleGan3Settings, run_stylegan3_merge_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_stylegan3_merge_stage(
    settings=StyleGan3Settings.from_method(snakemake.params.method, snakemake.wildcards.method),
    name=snakemake.wildcards.method,
    prompts_csv=Path(snakemake.input.prompts),
    class_outputs={
        image_class: (Path(generated), Path(summary))
        for image_class, generated, summary in zip(
            snakemake.params.image_classes, snakemake.input.generated, snakemake.input.summaries, strict=True
        )
    },
    image_size=snakemake.params.image_size,
    images_dir=Path(snakemake.output.images),
    manifest_csv=Path(snakemake.output.manifest),
    summary_json=Path(snakemake.output.summary),
)
