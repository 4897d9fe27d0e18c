import numpy as np
import pandas as pd
import pytest
from figure_checks import drawn_fraction
from sklearn.metrics import roc_auc_score, roc_curve

from migros.report.roc_curves import FALSE_POSITIVE_GRID, plot_roc_curves, roc_bands, roc_figure, tpr_at


def predictions(condition: str, seeds: int, separation: float, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Test predictions of `seeds` classifiers: tumour images score `separation` higher on average."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rows = [pd.DataFrame({"condition": condition, "seed": s, "image": [f"case{i}.png" for i in range(n)],
                          "label": labels, "probability": 1 / (1 + np.exp(-(labels * separation + rng.normal(size=n))))})
            for s in range(seeds)]
    return pd.concat(rows, ignore_index=True)


def test_the_curve_at_each_false_positive_rate_is_the_highest_rate_of_tumours_found():
    rows = predictions("real", 1, 1.5)
    fpr, tpr, _ = roc_curve(rows.label, rows.probability)
    at_grid = tpr_at(FALSE_POSITIVE_GRID, rows.label.to_numpy(), rows.probability.to_numpy())
    expected = [tpr[fpr <= rate].max() for rate in FALSE_POSITIVE_GRID]
    np.testing.assert_array_equal(at_grid, expected)
    # the area under the step curve read on a fine grid is the AUC
    fine = np.linspace(0, 1, 20001)
    area = np.trapezoid(tpr_at(fine, rows.label.to_numpy(), rows.probability.to_numpy()), fine)
    assert area == pytest.approx(roc_auc_score(rows.label, rows.probability), abs=2e-3)


def test_bands_average_the_seeds_and_cover_their_mean():
    rows = pd.concat([predictions("real", 5, 1.0), predictions("real+real_reserve", 5, 3.0, seed=1)])
    bands = roc_bands(rows)
    assert list(bands.condition.unique()) == ["real", "real+real_reserve"]
    real = bands[bands.condition == "real"]
    curves = np.array([tpr_at(FALSE_POSITIVE_GRID, s.label.to_numpy(), s.probability.to_numpy())
                       for _, s in rows[rows.condition == "real"].groupby("seed")])
    np.testing.assert_allclose(real.tpr, curves.mean(axis=0))
    assert (real.lower <= real.tpr).all() and (real.tpr <= real.upper).all() and (real.upper > real.lower).any()
    assert real.seeds.eq(5).all()
    aucs = [roc_auc_score(s.label, s.probability) for _, s in rows[rows.condition == "real"].groupby("seed")]
    assert real.auc.iloc[0] == pytest.approx(np.mean(aucs))
    better = bands[bands.condition == "real+real_reserve"]
    assert better.auc.iloc[0] > real.auc.iloc[0] + 0.1
    single = roc_bands(predictions("real", 1, 1.0))
    assert single.lower.isna().all() and single.upper.isna().all()


def test_the_figure_draws_each_condition_with_its_band_in_its_panel(tmp_path):
    rows = pd.concat([predictions("real", 3, 1.0), predictions("real+selora", 3, 1.2, seed=2),
                      predictions("synthetic_only:selora", 3, 0.2, seed=3), predictions("vae_reconstruction", 3, 0.1)])
    figure = roc_figure(rows, "brats")
    left, right = figure.axes
    labels = [line.get_label().split(":")[0] for line in left.get_lines()]
    assert labels == ["real", "real+selora", "chance"]
    assert [line.get_label().rsplit(":", 1)[0] for line in right.get_lines()] == [
        "real", "synthetic_only:selora", "vae_reconstruction", "chance"]
    assert len(left.collections) == 2 and len(right.collections) == 3  # one band per condition
    bands = roc_bands(rows)
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), bands[bands.condition == "real"].tpr)
    rows.to_csv(tmp_path / "predictions.csv", index=False)
    plot_roc_curves(tmp_path / "predictions.csv", "brats", tmp_path / "roc.png")
    assert drawn_fraction(tmp_path / "roc.png") > 0.03


def test_without_synthetic_only_classifiers_there_is_one_panel():
    figure = roc_figure(pd.concat([predictions("real", 2, 1.0), predictions("real+cgan", 2, 1.0)]), "brats")
    assert len(figure.axes) == 1
