import json
from pathlib import Path

from migros.evaluation import WEIGHTS_RECORD
from migros.jobs import start_job
from migros.report.tables import write_report_tables

start_job(snakemake.log[0], snakemake.threads)
write_report_tables(
    Path(snakemake.input.metrics),
    [Path(path) for path in snakemake.input.comparisons],
    snakemake.params.config,
    weights=json.loads((Path(snakemake.input.weights) / WEIGHTS_RECORD).read_text()),
    outputs={name: Path(path) for name, path in snakemake.output.items()},
)
