"""The report's tables as standalone HTML pages (the report viewer offers CSV files only as downloads).

Every table is built from results/metrics.csv, so what the report shows and what users download agree.
"""

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from migros.evaluation.classifier_settings import REAL_ONLY, TSTR_PREFIX, VAE_RECONSTRUCTION, ClassifierSettings
from migros.evaluation.design import MULTIPLICITY_METHODS, POWER_GOAL, SIGNIFICANCE, crossed_power, planning_table
from migros.evaluation.replicates import BETWEEN_SUFFIX, SEPARATOR, WITHIN_SUFFIX, within_standard_error
from migros.evaluation.membership_settings import (
    ATTACK_TITLES, ATTACKS, LOSS_ATTACKS, NO_DENOISING_LOSS_KINDS, NOT_APPLICABLE_BASE, NOT_APPLICABLE_GAN,
    TPR_AT_10PCT_FPR, TPR_AT_LOWEST_FPR, lowest_fpr, metric_name,
)
from migros.report import published
from migros.report.metrics import NO_ADAPTATION, REAL_TRAIN
from migros.report.reconstruction_grid import LESION_CONTRAST_KEPT

REAL_RESERVE = "real_reserve"  # the positive control (migros.data.reserve; common.smk names it the same)
SET_NAMES = {REAL_TRAIN: "real training split (floor)",
             VAE_RECONSTRUCTION: "VAE reconstructions of the test split (ceiling)",
             REAL_RESERVE: "real_reserve (positive control: further real patients)"}
# the designs the planning table tries: up to what a cluster might run, so that it names one where it can
PLANNED_REPLICATES, PLANNED_SEEDS = (1, 2, 3, 5, 10), (3, 5, 10, 20, 50, 100, 200)
DETECTABLE = "smallest detectable (80 % power, 5 % uncorrected)"
MULTIPLICITY_NAMES = {"holm": "Holm (family-wise error rate)", "fdr_bh": "Benjamini–Hochberg (false discovery rate)"}


STYLE = """<style>
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eee; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: 4px; }
p.note { color: #444; max-width: 60em; }
</style>"""


def page(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head><body>{body}</body></html>\n"


def table(frame: pd.DataFrame, caption: str) -> str:
    """`frame` as an HTML table with a caption; cells show `str(value)` (numbers are formatted before)."""
    body = frame.fillna("–").astype(str).to_html(index=False, border=0)
    opening = body.index(">") + 1
    return f"{body[:opening]}<caption>{html.escape(caption)}</caption>{body[opening:]}"


def number(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(value: float, std: float, digits: int = 2) -> str:
    """A published value with its standard deviation (the paper reports mean ± std over seeds)."""
    if std is None or math.isnan(std):
        return number(value, digits)
    return f"{value:.{digits}f} ± {std:.{digits}f}"


def with_interval(value: float, lower: float, upper: float, digits: int = 2) -> str:
    """A value with its 95 % interval in brackets, or the value alone where there is no interval."""
    if lower is None or math.isnan(lower) or math.isnan(upper):
        return number(value, digits)
    return f"{value:.{digits}f} [{lower:.{digits}f}, {upper:.{digits}f}]"


def lookup(metrics: pd.DataFrame, dataset: str, method: str, metric: str) -> pd.Series | None:
    """The row of one number, or None where that number was not produced."""
    found = metrics[(metrics.dataset == dataset) & (metrics.method == method) & (metrics.metric == metric)]
    return found.iloc[0] if len(found) else None


def value_of(metrics: pd.DataFrame, dataset: str, method: str, metric: str, digits: int = 2, scale: float = 1.0) -> str:
    """A number with its 95 % interval where it has one; `scale` multiplies all three (KID ×10³)."""
    row = lookup(metrics, dataset, method, metric)
    if row is None:
        return "–"
    return with_interval(scale * row.value, scale * row.lower, scale * row.upper, digits)


def comparability_note(config: dict, dataset: str) -> str:
    if published.comparable_with_paper(config, dataset):
        return "Setting matches the paper (real data, SD v1.5, 224 px): the published values are comparable."
    return ("NOT comparable with the published values: this run does not use the paper's setting (real data, "
            "SD v1.5, 224 px) — e.g. the offline demo runs on phantoms with a small model at low resolution. "
            "The published column is shown for orientation only.")


def methods_in(metrics: pd.DataFrame, dataset: str, metric: str) -> list[str]:
    """The methods with this metric, a method trained more than once under its pooled row only (its replicates'
    rows are in metrics.csv)."""
    names = metrics[(metrics.dataset == dataset) & (metrics.metric == metric)].method
    return [name for name in dict.fromkeys(names) if SEPARATOR not in name]


def replicate_spread(metrics: pd.DataFrame, dataset: str, method: str, metric: str, digits: int) -> dict:
    """The columns that show how much a pooled value moves between training replicates and within one; none for
    a method trained once."""
    between = lookup(metrics, dataset, method, metric + BETWEEN_SUFFIX)
    if between is None:
        return {}
    within = lookup(metrics, dataset, method, metric + WITHIN_SUFFIX)
    return {"replicates": f"{between.n:.0f}", "SD between replicates": number(between.value, digits),
            "SE within one": number(within.value, digits)}


def fid_table(metrics: pd.DataFrame, config: dict, weights: dict) -> str:
    parts = []
    for dataset in config["datasets"]:
        rows = []
        for method in methods_in(metrics, dataset, "fid"):
            fid = lookup(metrics, dataset, method, "fid")
            rows.append({
                "method": SET_NAMES.get(method, method),
                "n images": int(fid.n),
                "FID [95 % CI]": value_of(metrics, dataset, method, "fid", 1),
                "FID healthy": value_of(metrics, dataset, method, "fid_healthy", 1),
                "FID tumour": value_of(metrics, dataset, method, "fid_tumour", 1),
                "KID ×10³": value_of(metrics, dataset, method, "kid", 1, scale=1e3),
                "precision": value_of(metrics, dataset, method, "precision"),
                "recall": value_of(metrics, dataset, method, "recall"),
                "density": value_of(metrics, dataset, method, "density"),
                "coverage": value_of(metrics, dataset, method, "coverage"),
                "published FID": number(published.FID.get((dataset, method), math.nan)),
                **replicate_spread(metrics, dataset, method, "fid", 1),
            })
        reference = config["fid"]["reference_split"]
        parts.append(table(pd.DataFrame(rows), f"{dataset}: FID and KID against the real {reference} split"))
        parts.append(f"<p class='note'>{html.escape(comparability_note(config, dataset))}</p>")
    official = "the verified official file" if weights["official"] else "NOT the verified official file"
    parts.append(
        f"<p class='note'>Inception weights: {html.escape(str(weights['path']))}, SHA-256 {weights['sha256']}: "
        f"{official}. Found as: {html.escape(weights['origin'])}.</p>"
    )
    return page("FID and KID", "".join(parts))


def condition_name(method: str) -> str:
    if method == REAL_ONLY:
        return "none (real only)"
    if method == VAE_RECONSTRUCTION:
        return "none (real only), tested on the VAE's reconstructions of the test slices"
    if method.startswith(TSTR_PREFIX):
        return f"{method.removeprefix(TSTR_PREFIX)} alone (no real images)"
    return SET_NAMES.get(method, method)


def classifier_table(metrics: pd.DataFrame, config: dict) -> str:
    settings = ClassifierSettings.from_config({**config["classifier"], "image_size": 0})
    initialisation = "ImageNet-pretrained" if settings.pretrained == "imagenet" else "from random initialisation"
    parts = []
    for dataset in config["datasets"]:
        rows = []
        for method in methods_in(metrics, dataset, "classifier_auc"):
            condition = "real" if method == REAL_ONLY else f"real+{method}"
            paper = published.CLASSIFIER.get((dataset, condition), {})
            rows.append({
                "training images": condition_name(method),
                "# real": value_of(metrics, dataset, method, "classifier_n_train_real", 0),
                "# synthetic": value_of(metrics, dataset, method, "classifier_n_train_synthetic", 0),
                "optimizer steps": value_of(metrics, dataset, method, "classifier_optimizer_steps", 0),
                "AUC [95 % CI]": value_of(metrics, dataset, method, "classifier_auc"),
                "accuracy [95 % CI]": value_of(metrics, dataset, method, "classifier_accuracy"),
                "published AUC": mean_std(*paper["auc"]) if paper else "–",
                "published accuracy": mean_std(*paper["accuracy"]) if paper else "–",
                **replicate_spread(metrics, dataset, method, "classifier_auc", 3),
            })
        caption = (f"{dataset}: ResNet-18 ({initialisation}), budget {settings.describe_budget()}; mean and "
                   f"Student-t 95 % interval over {len(settings.seeds)} seeds, real test split")
        parts.append(table(pd.DataFrame(rows), caption))
        parts.append(f"<p class='note'>{html.escape(comparability_note(config, dataset))}</p>")
    parts.append("<p class='note'>Rows 'X alone' train on the synthetic set only and test on the real test split "
                 "(train on synthetic, test on real). Published values are mean ± std over 5 seeds.</p>")
    return page("Classifier", "".join(parts))


def fidelity_table(metrics: pd.DataFrame, config: dict) -> str:
    parts = []
    for dataset in config["datasets"]:
        rows = [{
            "method": method,
            "tumour prompts classified tumour": value_of(metrics, dataset, method, "fidelity_tumour_prompts"),
            "healthy prompts classified healthy": value_of(metrics, dataset, method, "fidelity_healthy_prompts"),
        } for method in methods_in(metrics, dataset, "fidelity_tumour_prompts")]
        parts.append(table(pd.DataFrame(rows), f"{dataset}: prompt fidelity (real-only classifier, mean [95 % CI] over seeds)"))
    return page("Prompt fidelity", "".join(parts))


def fid_standard_error(metrics: pd.DataFrame, dataset: str, method: str) -> tuple[float, float]:
    """(standard error, degrees of freedom) of a set's FID: of a method's mean over R training replicates, their
    spread / √R combined with the mean standard error within one (as its pooled interval,
    `migros.evaluation.replicates`), with R − 1 degrees of freedom; of a single set, its bootstrap interval's
    half-width / z(0.975) (normal: infinite degrees of freedom)."""
    between = lookup(metrics, dataset, method, "fid" + BETWEEN_SUFFIX)
    if between is not None:
        within = lookup(metrics, dataset, method, "fid" + WITHIN_SUFFIX)
        return math.hypot(between.value / math.sqrt(between.n), within.value), between.n - 1
    return within_standard_error(lookup(metrics, dataset, method, "fid")), math.inf


def fid_difference_test(metrics: pd.DataFrame, dataset: str, method: str, baseline: str) -> dict:
    """FID difference of two sets with a t test whose standard error combines theirs as if independent, at the
    smaller of their degrees of freedom. Both sets are scored against the same real images, which correlates
    their errors positively, so the combined error is too large: p and the smallest detectable difference err on
    the cautious side."""
    (first, first_df), (second, second_df) = (fid_standard_error(metrics, dataset, name) for name in (method, baseline))
    standard_error, df = math.hypot(first, second), min(first_df, second_df)
    difference = lookup(metrics, dataset, method, "fid").value - lookup(metrics, dataset, baseline, "fid").value
    p_value = 2 * stats.t.sf(abs(difference) / standard_error, df) if standard_error > 0 else float(difference == 0)
    detectable = (stats.t.ppf(1 - SIGNIFICANCE / 2, df) + stats.t.ppf(POWER_GOAL, df)) * standard_error
    return {"difference": difference, "p_value": p_value, "minimum_detectable": detectable}


def evidence_comparisons(metrics: pd.DataFrame, comparisons: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every tested difference of a dataset: FID of each set against the base model's, and the classifier's
    paired comparisons. Columns comparison, difference, shown, p_value, minimum_detectable, metric, method,
    baseline."""
    rows = []
    base = lookup(metrics, dataset, NO_ADAPTATION, "fid")
    for method in methods_in(metrics, dataset, "fid"):
        fid = lookup(metrics, dataset, method, "fid")
        if base is None or method in (NO_ADAPTATION, REAL_TRAIN, VAE_RECONSTRUCTION) or math.isnan(fid.lower):
            continue
        tested = fid_difference_test(metrics, dataset, method, NO_ADAPTATION)
        rows.append({"comparison": f"FID: {SET_NAMES.get(method, method)} vs {NO_ADAPTATION}", "metric": "fid",
                     "method": method, "baseline": NO_ADAPTATION, "digits": 1, **tested,
                     "shown": f"{tested['difference']:+.1f} (intervals {with_interval(fid.value, fid.lower, fid.upper, 1)}"
                              f" and {with_interval(base.value, base.lower, base.upper, 1)})"})
    pooled = comparisons[(comparisons.dataset == dataset) & ~comparisons.method.str.contains(SEPARATOR, regex=False)
                         & ~comparisons.baseline.str.contains(SEPARATOR, regex=False)]
    for row in pooled.itertuples():
        metric = row.metric.removeprefix("classifier_")
        if row.method == VAE_RECONSTRUCTION:
            compared = "real only, tested on VAE reconstructions vs on the original test slices"
        else:
            compared = f"real+{row.method} vs {'real only' if row.baseline == REAL_ONLY else 'real+' + row.baseline}"
        rows.append({"comparison": f"{metric}: {compared}", "metric": row.metric, "method": row.method,
                     "baseline": row.baseline, "digits": 3, "difference": row.difference, "p_value": row.p_value,
                     "minimum_detectable": row.minimum_detectable,
                     "shown": with_interval(row.difference, row.lower, row.upper, 3)})
    return pd.DataFrame(rows, columns=["comparison", "metric", "method", "baseline", "digits", "difference", "shown",
                                       "p_value", "minimum_detectable"])


def verdict(row, adjusted: float, family: int) -> str:
    """Whether a difference is told from noise after the correction for the `family` tests of the table, and if
    not, what the design could have seen (the smallest detectable difference is that of the test alone)."""
    if math.isnan(adjusted):
        return "not tested (one seed)"
    if adjusted < SIGNIFICANCE:
        better = row.difference < 0 if row.metric == "fid" else row.difference > 0
        return f"{'better' if better else 'worse'}, distinguishable from noise"
    if row.p_value < SIGNIFICANCE:
        return f"distinguishable alone (p < 0.05), not after the correction for the {family} comparisons"
    return (f"not distinguishable from noise; differences below {number(row.minimum_detectable, row.digits)} could "
            "not have been seen")


def control_statement(metrics: pd.DataFrame, tested: pd.DataFrame, dataset: str) -> str:
    """The first line of a dataset's evidence: does real + the reserve beat real only, i.e. can this design find an
    effect where one exists?"""
    real = lookup(metrics, dataset, REAL_ONLY, "classifier_auc")
    control = tested[(tested.method == REAL_RESERVE) & (tested.baseline == REAL_ONLY)
                     & (tested.metric == "classifier_auc")]
    if control.empty:
        return ("No positive control: datasets." + dataset + ".split.reserve is 0, so this report cannot tell "
                "'no effect' from 'could not have seen one'.")
    row = control.iloc[0]
    images = lookup(metrics, dataset, REAL_RESERVE, "classifier_n_train_synthetic")
    added = f"{images.value:.0f} reserve slices" if images is not None else "the reserve slices"
    if real is not None and real.lower <= 0.5:
        learned = (f"The real-only classifier does not beat chance distinguishably here (AUC "
                   f"{with_interval(real.value, real.lower, real.upper)}): at this training budget it may not learn the "
                   "dataset at all, and then no augmentation can show an effect. ")
    else:
        learned = ""
    shown = f"AUC {row.shown}, p ({row.correction}) {number(row.adjusted, 3)}"
    if row.adjusted < SIGNIFICANCE and row.difference > 0:
        return (f"{learned}Positive control: real + {added} beats real only ({shown}): this design finds an effect of "
                "that size where one exists.")
    return (f"{learned}Positive control: real + {added} does NOT beat real only distinguishably ({shown}; smallest "
            f"detectable {number(row.minimum_detectable, 3)}): even further real patients add nothing this design "
            "can see, so a method's gain that is not distinguishable here is 'could not have seen', not 'no effect'.")


def planning_rows(comparisons: pd.DataFrame, dataset: str, effect: float, replicates: int) -> list[dict]:
    """For each AUC comparison against real only: its power now and the smallest designs (training replicates ×
    classifier seeds) that detect `effect` with the spreads observed (`migros.evaluation.design.planning_table`).
    A set trained once (or the control) shows no variance between training runs: it is taken as 0, and the
    per-seed spread counts as a seed effect that more replicates do not reduce, so the designs named are the least
    that could suffice."""
    rows = []
    auc = comparisons[(comparisons.dataset == dataset) & (comparisons.metric == "classifier_auc")
                      & (comparisons.baseline == REAL_ONLY) & (comparisons.method != VAE_RECONSTRUCTION)
                      & ~comparisons.method.str.contains(SEPARATOR, regex=False)]
    for row in auc.itertuples():
        seen = not math.isnan(row.replicate_sd)
        components = ((row.replicate_sd ** 2, row.seed_sd ** 2, row.residual_sd ** 2) if seen
                      else (math.nan, row.sd ** 2, 0.0))
        runs = replicates if seen else 1
        plan = planning_table(*components, effect, replicates=PLANNED_REPLICATES, units=PLANNED_SEEDS)
        detecting = plan[plan.detects].assign(units=lambda frame: frame.replicates * frame.seeds).sort_values("units")
        rows.append({
            "comparison": f"auc: real+{row.method} vs real only", "replicates × seeds": f"{runs} × {row.n // runs}",
            "SD of the per-seed differences": number(row.sd, 3),
            "SD between replicates": number(row.replicate_sd, 3) if seen else "unseen (one run)",
            "power now": number(crossed_power(effect, 0.0 if not seen else components[0], *components[1:], runs,
                                              row.n // runs), 2),
            f"smallest designs detecting {effect} (replicates × seeds)": (
                ", ".join(f"{r.replicates} × {r.seeds}" for r in detecting.head(2).itertuples()) if len(detecting)
                else f"more than {plan.replicates.max()} × {plan.seeds.max()}"),
        })
    return rows


def evidence_table(metrics: pd.DataFrame, comparisons: pd.DataFrame, config: dict) -> str:
    correction = config["evidence"]["multiplicity"]
    effect = config["evidence"]["planning_effect"]
    replicates = config["finetune"]["replicates"]
    coverage = ("Every interval covers the images and seeds drawn, not a repeated fine-tuning run: each method was "
                "trained once (finetune.replicates: 1)." if replicates == 1 else
                f"A method's values are pooled over its {replicates} training replicates: their intervals and tests "
                "cover training variance (the control and the base model are not trained and have one run).")
    parts = [f"<p class='note'>Which differences between methods the run can tell from noise, each beside the "
             f"smallest difference it could have detected (80 % power, 5 % two-sided). FID: a t test from the sets' "
             f"intervals (bootstrap over images; over replicates where pooled). Classifier: the same seeds with and "
             f"without augmentation, mean difference with its Student-t 95 % interval and the paired t-test (over "
             f"replicate means where pooled). The p-values of each dataset's table are corrected together with "
             f"{html.escape(MULTIPLICITY_NAMES[correction])}; a difference counts when its corrected p &lt; 0.05. "
             f"{html.escape(coverage)}</p>"]
    for dataset in config["datasets"]:
        tested = evidence_comparisons(metrics, comparisons, dataset)
        tested["adjusted"] = MULTIPLICITY_METHODS[correction](tested.p_value.to_numpy(dtype=float))
        tested["correction"] = correction
        parts.append(f"<p><b>{html.escape(dataset)}.</b> {html.escape(control_statement(metrics, tested, dataset))}</p>")
        rows = [{"comparison": row.comparison, "difference [95 % CI]": row.shown, "p": number(row.p_value, 3),
                 f"p ({correction})": number(row.adjusted, 3),
                 DETECTABLE: number(row.minimum_detectable, row.digits),
                 "verdict": verdict(row, row.adjusted, int(tested.p_value.notna().sum()))}
                for row in tested.itertuples()]
        rows += descriptive_rows(metrics, dataset)
        parts.append(table(pd.DataFrame(rows, columns=["comparison", "difference [95 % CI]", "p", f"p ({correction})",
                                                       DETECTABLE, "verdict"]),
                           f"{dataset}: method differences and whether they are distinguishable from noise"))
        if plan := planning_rows(comparisons, dataset, effect, replicates):
            parts.append(table(pd.DataFrame(plan), f"{dataset}: planning the next run: training replicates and "
                                                   f"classifier seeds to detect an AUC gain of {effect}"))
            parts.append("<p class='note'>Power of the replicates × seeds test of the mean difference with the spreads "
                         "observed. Where the variance between training runs is unseen (one run) it is taken as 0, "
                         "and the designs named are the least that could suffice.</p>")
        parts.append(f"<p class='note'>{html.escape(comparability_note(config, dataset))}</p>")
    return page("Evidence", "".join(parts))


def descriptive_rows(metrics: pd.DataFrame, dataset: str) -> list[dict]:
    """What bounds every method, with no test: the autoencoder's ceiling against the floor, and lesion contrast."""
    rows = []
    floor, ceiling = lookup(metrics, dataset, REAL_TRAIN, "fid"), lookup(metrics, dataset, VAE_RECONSTRUCTION, "fid")
    if floor is not None and ceiling is not None:
        rows.append({"comparison": "FID: VAE reconstructions of the test split (ceiling) vs real training split (floor)",
                     "difference [95 % CI]": f"{ceiling.value / floor.value:.1f}× the floor "
                                             f"({number(ceiling.value, 1)} vs {number(floor.value, 1)})",
                     "verdict": "the autoencoder alone costs "
                                f"{ceiling.value - floor.value:.0f} FID points: no latent model can score below "
                                f"{number(ceiling.value, 1)}"})
    kept = lookup(metrics, dataset, VAE_RECONSTRUCTION, LESION_CONTRAST_KEPT)
    if kept is not None:
        rows.append({"comparison": "Lesion contrast kept by the VAE (median over tumour test slices, "
                                   "reconstruction / original)",
                     "difference [95 % CI]": f"{with_interval(kept.value, kept.lower, kept.upper, 2)} of {kept.n:.0f} slices",
                     "verdict": "1 = lesions intact, 0 = gone: what any latent model can generate at best"})
    return rows


def memorisation_table(metrics: pd.DataFrame, config: dict) -> str:
    threshold = config["memorisation"]["near_copy_threshold"]
    parts = []
    for dataset in config["datasets"]:
        rows = [{
            "images": "real test split (distinct patients)" if method == "real_test" else method,
            "n": int(lookup(metrics, dataset, method, "memorisation_median_ssim").n),
            "median SSIM to nearest training image": value_of(metrics, dataset, method, "memorisation_median_ssim", 3),
            f"share with SSIM ≥ {threshold}": value_of(metrics, dataset, method, "memorisation_near_copy_share", 3),
            "share closer than any real test image": value_of(
                metrics, dataset, method, "memorisation_closer_than_any_patient_share", 3),
        } for method in methods_in(metrics, dataset, "memorisation_median_ssim")]
        parts.append(table(pd.DataFrame(rows), f"{dataset}: nearest real training image of every image"))
    return page("Memorisation", "".join(parts))


def classifier_gain(comparisons: pd.DataFrame, dataset: str, method: str) -> str:
    """AUC of real + the method's images minus real only, paired over seeds, where the classifier used them."""
    found = comparisons[(comparisons.dataset == dataset) & (comparisons.method == method)
                        & (comparisons.baseline == REAL_ONLY) & (comparisons.metric == "classifier_auc")]
    if not len(found):
        return "–"
    row = found.iloc[0]
    return f"{row.difference:+.3f} [{row.lower:+.3f}, {row.upper:+.3f}]"


def privacy_cell(metrics: pd.DataFrame, config: dict, dataset: str, method: str, attack: str, statistic: str) -> str:
    """An attack's number, or why the attack does not apply to the method."""
    if attack in LOSS_ATTACKS and method in config["methods"] and \
            config["methods"][method]["kind"] in NO_DENOISING_LOSS_KINDS:
        return NOT_APPLICABLE_GAN
    if attack == "loss_difference" and method == NO_ADAPTATION:
        return NOT_APPLICABLE_BASE
    return value_of(metrics, dataset, method, metric_name(attack, statistic))


def defence_of(config: dict, method: str) -> str:
    """The privacy defence a method trained with, in words (not a placeholder: the report check counts those)."""
    entry = config["methods"].get(method)
    return "no training" if entry is None else entry.get("privacy", {}).get("defence", "no defence")


def lowest_fpr_title(audited_images: int) -> str:
    """The lowest FPR that an audit of `audited_images` (members + as many non-members) shows, in words."""
    non_members = audited_images // 2
    return f"{lowest_fpr(non_members):.1%} (1 of {non_members} non-members)".replace("%", " %")


def privacy_table(metrics: pd.DataFrame, comparisons: pd.DataFrame, config: dict) -> str:
    """Per dataset one row per audited method: each attack's AUC and TPR at the lowest FPR the audit shows and at
    10 % FPR, the near-copy share of the memorisation check, FID and the classifier's AUC gain."""
    parts = ["<p class='note'>Membership inference: could an attacker tell the real training slices a method was "
             "adapted on (members) from real test slices (non-members, the same number and class balance)? "
             "AUC 0.5 means the attack cannot tell them apart (no measurable leak at this n); 1 means every member "
             "is recognised. TPR at the lowest FPR: the share of members recognised while one non-member is wrongly "
             "flagged, the lowest false-positive rate above 0 that n non-members show (1/n: with fewer than 100 "
             "non-members a rate of 1 % cannot be measured); TPR at 10 % FPR likewise with a tenth flagged. Attacks: "
             "<b>loss</b> (the adapted model's noise-prediction loss), <b>loss difference</b> (that loss against the "
             "base model's on the same image and noise: the stronger test), <b>learned attack</b> (an MLP on the "
             "adapted model's per-element loss maps, trained on members against slices in neither split, never on "
             "the member it scores: the attack Stable PrivateLoRA defends against, and the one its paper audits "
             "with), <b>distance</b> (to the nearest generated image, GAN-Leaks: needs only the synthetic images, so "
             "it also audits the GANs). "
             "no_adaptation never saw the training slices: its row is the no-signal reference. <b>defence</b>: "
             "stable_privatelora marks a method adapted with Stable PrivateLoRA; compare it with the same method "
             "without. Intervals: 95 % bootstrap over the audited images (for the learned attack with its MLPs "
             "fixed).</p>"]
    for dataset in config["datasets"]:
        audit = metrics[(metrics.dataset == dataset) & metrics.metric.str.startswith("mi_")]
        rows = []
        for method in (name for name in dict.fromkeys(audit.method) if SEPARATOR not in name):  # pooled replicates
            audited = audit[audit.method == method]
            row = {"method": method, "defence": defence_of(config, method), "n audited": int(audited.n.iloc[0])}
            tpr_title = f"TPR at lowest FPR, {lowest_fpr_title(row['n audited'])} / at 10 % FPR"
            for attack in ATTACKS:
                title = ATTACK_TITLES[attack]
                auc = row[f"{title}: AUC"] = privacy_cell(metrics, config, dataset, method, attack, "auc")
                row[f"{title}: {tpr_title}"] = "–" if auc.startswith("not applicable") else " / ".join(
                    privacy_cell(metrics, config, dataset, method, attack, statistic)
                    for statistic in (TPR_AT_LOWEST_FPR, TPR_AT_10PCT_FPR))
            row["near-copy share"] = value_of(metrics, dataset, method, "memorisation_near_copy_share", 3)
            row["FID"] = value_of(metrics, dataset, method, "fid", 1)
            row["classifier AUC gain (real+method − real)"] = classifier_gain(comparisons, dataset, method)
            rows.append(row)
        parts.append(table(pd.DataFrame(rows), f"{dataset}: membership inference beside memorisation, FID and "
                                                f"classifier gain"))
    return page("Privacy", "".join(parts))


def adapter_table(metrics: pd.DataFrame, config: dict) -> str:
    """Per method: its kind, what it trained and for how long, its size at the end (an adapter's as exported: for
    ARENA and AdaLoRA the ranks that survived pruning; a GAN's generator and discriminator); ranks for the adapters
    (a GAN has none: –)."""
    parts = []
    for dataset in config["datasets"]:
        rows = [{
            "method": method,
            "kind": config["methods"][method]["kind"],
            "optimizer steps": value_of(metrics, dataset, method, "steps", 0),
            "training seconds": value_of(metrics, dataset, method, "training_seconds", 0),
            "parameters at the end (adapters: as exported)": value_of(metrics, dataset, method,
                                                                       "trainable_parameters", 0),
            "sum of ranks": value_of(metrics, dataset, method, "final_rank_total", 0),
            "largest rank": value_of(metrics, dataset, method, "final_rank_max", 0),
        } for method in methods_in(metrics, dataset, "steps")]
        parts.append(table(pd.DataFrame(rows), f"{dataset}: adapters and GANs at the end of training"))
    return page("Adapters", "".join(parts))


def config_page(config: dict) -> str:
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    return page("Configuration", f"<pre>{html.escape(text)}</pre>")


def write_report_tables(metrics_csv: Path, comparison_csvs: list[Path], config: dict, weights: dict,
                        outputs: dict[str, Path]) -> None:
    """Write each table page named in `outputs` (evidence, fid, classifier, fidelity, memorisation, privacy,
    adapters, config)."""
    metrics = pd.read_csv(metrics_csv)
    comparisons = pd.concat([pd.read_csv(path) for path in comparison_csvs], ignore_index=True)
    pages = {
        "evidence": lambda: evidence_table(metrics, comparisons, config),
        "fid": lambda: fid_table(metrics, config, weights),
        "classifier": lambda: classifier_table(metrics, config),
        "fidelity": lambda: fidelity_table(metrics, config),
        "memorisation": lambda: memorisation_table(metrics, config),
        "privacy": lambda: privacy_table(metrics, comparisons, config),
        "adapters": lambda: adapter_table(metrics, config),
        "config": lambda: config_page(config),
    }
    for name, path in outputs.items():
        Path(path).write_text(pages[name](), encoding="utf-8")
