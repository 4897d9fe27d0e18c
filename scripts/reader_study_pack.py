from pathlib import Path

from migros.jobs import start_job
from migros.reader_study.pack import PackSettings, build_pack

start_job(snakemake.log[0], snakemake.threads)
methods = snakemake.params.methods
build_pack(
    dataset=snakemake.wildcards.dataset,
    kinds=dict(zip(methods, snakemake.params.kinds)),
    manifest_csvs=dict(zip(methods, map(Path, snakemake.input.manifests))),
    fid_csvs=dict(zip(methods, map(Path, snakemake.input.fids))),
    metadata_csv=Path(snakemake.input.metadata),
    settings=PackSettings.from_config(snakemake.params.settings),
    out_dir=Path(snakemake.output[0]),
)
