from pathlib import Path

from migros.jobs import start_job
from migros.report.metrics import collect_metrics

start_job(snakemake.log[0], snakemake.threads)
sources = {
    kind: [(dataset, method, Path(path)) for (dataset, method), path in zip(keys, snakemake.input[kind])]
    for kind, keys in snakemake.params.sources.items()
}
collect_metrics(sources).to_csv(snakemake.output[0], index=False)
