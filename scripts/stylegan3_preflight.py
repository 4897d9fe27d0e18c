from pathlib import Path

from migros.gan.stylegan3 import StyleGan3Settings, run_stylegan3_preflight
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_stylegan3_preflight(
    settings=StyleGan3Settings.from_method(snakemake.params.method, snakemake.wildcards.method),
    name=snakemake.wildcards.method,
    dataset=snakemake.wildcards.dataset,
    image_size=snakemake.params.image_size,
    report_json=Path(snakemake.output.report),
)
