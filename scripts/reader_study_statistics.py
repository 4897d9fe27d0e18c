from pathlib import Path

from migros.jobs import start_job
from migros.reader_study.figure import plot_reader_study
from migros.reader_study.statistics import read_answers, study_statistics

start_job(snakemake.log[0], snakemake.threads)
dataset = snakemake.wildcards.dataset
answers = read_answers(Path(snakemake.input.answers), dataset)
study_statistics(dataset, answers, snakemake.params.resamples, snakemake.params.seed).to_csv(
    snakemake.output.statistics, index=False)
plot_reader_study(Path(snakemake.output.statistics), dataset, Path(snakemake.output.figure))
