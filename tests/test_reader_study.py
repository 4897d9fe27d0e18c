"""The reader study without a browser: the power statement, the pack, each reader's layout, the answer store, the
command line and the statistics (on simulated answers whose truth is known). The page itself is tested in
test_reader_study_browser.py."""

import dataclasses
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest
import yaml
from figure_checks import drawn_fraction
from PIL import Image
from reader_study_packs import (
    bytes_name_a_method, make_pack, names_a_method, pack_settings, png_chunks, study_inputs,
)
from scipy import stats
from workflow_run import REPO, validated

from migros.reader_study import cli
from migros.reader_study.figure import plot_reader_study
from migros.reader_study.layout import reader_trials
from migros.reader_study.pack import ALPHA, PackSettings, build_pack, choose_comparisons
from migros.reader_study.pack_format import Pack, PackError
from migros.reader_study.power import PowerStatement, exact_test_p_values, exact_test_power, pairs_needed
from migros.reader_study.statistics import (
    fit_bradley_terry, fleiss_kappa, read_answers, share_rows, study_statistics, win_table,
)
from migros.reader_study.store import EXPORT_COLUMNS, OutOfOrder, StoreError, StudyStore


# ---- power ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pairs", [1, 10, 49, 108])
def test_exact_p_values_are_scipys_binomial_test(pairs):
    expected = [stats.binomtest(k, pairs, 0.5).pvalue for k in range(pairs + 1)]
    np.testing.assert_allclose(exact_test_p_values(pairs), expected, rtol=1e-12)


def test_the_papers_ten_pairs_show_only_nine_or_ten_wins_and_54_pairs_give_80_percent_power():
    assert np.flatnonzero(exact_test_p_values(10) <= ALPHA).tolist() == [0, 1, 9, 10]
    assert exact_test_power(10, 0.7, ALPHA) < 0.2
    # the exact test's power dips below the goal at 50 and 53 pairs after first reaching it at 49
    assert pairs_needed(0.7, 0.8, ALPHA) == (49, 54)
    assert exact_test_power(50, 0.7, ALPHA) < 0.8 <= min(exact_test_power(n, 0.7, ALPHA) for n in range(54, 120))
    assert pairs_needed(0.8, 0.8, ALPHA)[0] == 20
    statement = PowerStatement.of(54, 2, 0.7, 0.8, ALPHA)
    assert statement.meets_goal and statement.power_per_comparison > statement.power_per_class


def test_the_schemas_default_pack_meets_the_power_goal():
    section = validated(yaml.safe_load((REPO / "config/config.yaml").read_text()))["reader_study"]
    assert set(section) == {field.name for field in dataclasses.fields(PackSettings)} | {
        "build", "methods", "bootstrap_resamples", "answers"}
    settings = PackSettings.from_config({field.name: section[field.name] for field in dataclasses.fields(PackSettings)})
    assert PowerStatement.of(settings.pairs_per_class, 2, settings.power_goal.preference, settings.power_goal.power,
                             ALPHA).meets_goal
    assert settings.calibration_per_class == 9  # the paper's 9 + 9


# ---- the pack -------------------------------------------------------------------------------------------------

def test_paper_pairing_takes_the_best_fid_selora_and_gan_and_all_pairs_every_pair():
    kinds = {"lora_r4": "lora", "selora_a": "selora", "selora_b": "selora", "gan_a": "gan", "sg3": "stylegan3"}
    fids = {"lora_r4": 1.0, "selora_a": 50.0, "selora_b": 40.0, "gan_a": 30.0, "sg3": 20.0}
    assert choose_comparisons("paper", kinds, fids) == [("selora_b", "sg3")]
    assert len(choose_comparisons("all_pairs", kinds, fids)) == 10
    with pytest.raises(PackError, match="needs a selora method and a GAN"):
        choose_comparisons("paper", {"selora_a": "selora"}, fids)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Pack:
    return Pack.load(make_pack(tmp_path_factory.mktemp("pack"), pairs_per_class=5))


def test_pack_has_balanced_items_each_image_once_and_the_calibration_slices(pack):
    items = pd.DataFrame(pack.key["items"])
    assert pack.key["comparisons"] == [["selora_l1.00", "cgan"]]
    assert items["class"].value_counts().to_dict() == {"healthy": 5, "tumour": 5}
    images = pd.DataFrame(pack.key["images"])
    assert images.token.is_unique and images.source.is_unique
    trial_images = images[images.role == "trial"]
    assert trial_images.groupby(["method", "class"]).size().to_dict() == {
        (method, name): 5 for method in ("cgan", "selora_l1.00") for name in ("healthy", "tumour")}
    calibration = images[images.role == "calibration"]
    assert calibration["class"].value_counts().to_dict() == {"healthy": 9, "tumour": 9}
    assert all("/slices/case" in source for source in calibration.source)
    metadata = pd.read_csv(pack.folder.parent / "inputs/slices/metadata.csv").set_index("image")
    assert set(metadata.split[calibration.source]) == {"test"}  # slices no method was adapted on
    assert {len(pack.study["calibration"][name]) for name in ("healthy", "tumour")} == {9}


def test_pack_images_are_one_size_grayscale_without_metadata_under_random_tokens(pack):
    files = sorted((pack.folder / "images").iterdir())
    assert len(files) == 2 * 10 + 18
    for path in files:
        data = path.read_bytes()
        assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("L", (64, 64))
        assert not bytes_name_a_method(data)
    assert {path.stem for path in files} == {image["token"] for image in pack.key["images"]}


def test_the_method_scan_finds_names_and_kinds_but_not_words_inside_tokens():
    assert names_a_method('{"left": "cgan"}') and names_a_method("a GAN image") and names_a_method("SeLoRA")
    assert not names_a_method("/img/x7GaNq-z.png organ again") and not bytes_name_a_method(b"\x89PNG GAN")


def test_study_json_names_no_method_and_states_the_power(pack):
    assert not names_a_method((pack.folder / "study.json").read_text())
    power = pack.study["power"]
    assert (power["pairs_per_class"], power["pairs_needed"], power["meets_goal"]) == (5, 49, False)
    assert power["power_per_class"] == pytest.approx(exact_test_power(5, 0.7, 0.05))
    assert pack.study["items"][0]["tokens"][0] in {image["token"] for image in pack.key["images"]}


def test_pack_refuses_more_pairs_than_unused_images_and_serves_no_path_outside(tmp_path, pack):
    inputs = study_inputs(tmp_path / "inputs", images_per_class=6)
    with pytest.raises(PackError, match="fewer than reader_study.pairs_per_class = 7"):
        build_pack("brats", settings=pack_settings(pairs_per_class=7), out_dir=tmp_path / "pack", **inputs)
    assert pack.image_path("../key") is None and pack.image_path("x" * 22) is None
    assert pack.image_path(pack.study["calibration"]["healthy"][0]) is not None


# ---- layouts --------------------------------------------------------------------------------------------------

def test_each_reader_sees_every_item_once_with_balanced_sides_mirrored_in_the_next_reader(pack):
    items = pack.key["items"]
    token_a = {item["item"]: item["token_a"] for item in items}
    stratum = {item["item"]: item["class"] for item in items}
    layouts = [reader_trials(items, seed=0, slot=slot) for slot in range(4)]
    for trials in layouts:
        assert sorted(trial.item for trial in trials) == sorted(token_a)
        a_left = pd.Series({trial.item: trial.left_token == token_a[trial.item] for trial in trials})
        assert a_left.groupby(stratum).sum().tolist() in ([2, 2], [2, 3], [3, 2], [3, 3])  # 5 per class
    for first, second in ((0, 1), (2, 3)):
        left = {trial.item: trial.left_token for trial in layouts[first]}
        assert all(left[trial.item] == trial.right_token for trial in layouts[second])
    assert [trial.item for trial in layouts[0]] != [trial.item for trial in layouts[1]]
    assert reader_trials(items, seed=0, slot=2) == layouts[2]


# ---- the store ------------------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path, pack):
    store = StudyStore(tmp_path / "answers.sqlite", pack)
    yield store
    store.close()


def answer_all(store: StudyStore, reader: str, choose) -> None:
    while (trial := store.progress(reader).next_trial) is not None:
        store.record_answer(reader, trial.trial, choose(trial), 1500 + trial.trial)


def test_an_answer_is_stored_once_in_order_and_never_changed(store):
    token, new = store.add_reader("alice")
    assert new and store.add_reader("alice") == (token, False) and store.reader_of(token) == "alice"
    assert store.record_answer("alice", 0, "left", 900)[0] is True
    stored_again, progress = store.record_answer("alice", 0, "right", 5)
    assert stored_again is False and progress.answered == 1 and progress.next_trial.trial == 1
    with pytest.raises(OutOfOrder):
        store.record_answer("alice", 5, "left", 900)
    with pytest.raises(StoreError, match="side"):
        store.record_answer("alice", 1, "middle", 900)
    with pytest.raises(StoreError, match="reader id"):
        store.add_reader("alice smith")
    rows = store.export_rows()
    assert [(row["trial"], row["chosen_side"], row["response_ms"]) for row in rows] == [(0, "left", 900)]


def test_simultaneous_answers_to_one_trial_store_one_row(store):
    store.add_reader("bob")
    results = []
    threads = [threading.Thread(target=lambda side=side: results.append(store.record_answer("bob", 0, side, 700)[0]))
               for side in ("left", "right") * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]
    assert len(store.export_rows()) == 1


def test_a_database_is_refused_for_another_pack(tmp_path, store):
    other = Pack.load(make_pack(tmp_path / "other"))
    with pytest.raises(StoreError, match="rebuilt"):
        StudyStore(store.path, other)


def test_export_equals_the_database_and_names_the_methods_shown(tmp_path, store, pack):
    for reader in ("alice", "bob"):
        store.add_reader(reader)
        answer_all(store, reader, lambda trial: "left" if trial.trial % 3 else "right")
    assert cli.main(["export", "--db", str(store.path), "--out", str(tmp_path / "answers.csv")]) == 0
    exported = pd.read_csv(tmp_path / "answers.csv", dtype={"reader": str})
    assert list(exported.columns) == EXPORT_COLUMNS
    with sqlite3.connect(store.path) as connection:
        database = pd.read_sql("SELECT a.*, t.item, t.left_token, t.right_token FROM answers a JOIN trials t "
                               "USING (reader, trial) ORDER BY reader, trial", connection)
    pd.testing.assert_frame_equal(
        exported[database.columns].sort_values(["reader", "trial"]).reset_index(drop=True), database)
    method_of = {image["token"]: image["method"] for image in pack.key["images"]}
    assert (exported.left_method == exported.left_token.map(method_of)).all()
    assert (exported.right_method == exported.right_token.map(method_of)).all()
    chosen_token = np.where(exported.chosen_side == "left", exported.left_token, exported.right_token)
    assert (exported.chosen_method == pd.Series(chosen_token).map(method_of)).all()
    assert set(exported.pack_id) == {pack.pack_id} and set(exported.dataset) == {"brats"}


def test_add_reader_prints_a_link_and_keeps_it(pack, tmp_path, capsys):
    arguments = ["add-reader", str(pack.folder), "carol", "--db", str(tmp_path / "db.sqlite"), "--url",
                 "http://study.example:8000"]
    assert cli.main(arguments) == 0
    link = capsys.readouterr().out.strip().split(": ")[1]
    assert link.startswith("http://study.example:8000/r/") and len(link.split("/")[-2]) == 32
    assert cli.main(arguments) == 0
    assert capsys.readouterr().out.strip().endswith(link)


# ---- statistics -----------------------------------------------------------------------------------------------

def simulated_answers(generator, readers: dict[str, float], pairs_per_class: int = 54,
                      comparisons=(("selora_l1.00", "cgan"),), left_bias: dict | None = None) -> pd.DataFrame:
    """Every reader answers every item of every comparison, choosing its first method with their probability."""
    rows = []
    for reader, preference in readers.items():
        for comparison, (method_a, method_b) in enumerate(comparisons):
            for item in range(2 * pairs_per_class):
                a_left = bool(item % 2)
                chose_a = generator.random() < preference
                if left_bias and generator.random() < left_bias.get(reader, 0):
                    chose_a = a_left  # a reader who sometimes just picks the left image
                chosen = method_a if chose_a else method_b
                rows.append({"pack_id": "p", "dataset": "brats", "reader": reader, "trial": item,
                             "item": comparison * 1000 + item, "class": ("healthy", "tumour")[item // pairs_per_class],
                             "method_a": method_a, "method_b": method_b,
                             "left_method": method_a if a_left else method_b,
                             "right_method": method_b if a_left else method_a,
                             "chosen_side": "left" if chose_a == a_left else "right", "chosen_method": chosen,
                             "response_ms": int(generator.integers(800, 6000)), "answered_at": "",
                             "left_token": "", "right_token": ""})
    return pd.DataFrame(rows, columns=EXPORT_COLUMNS)


def preference_shares(answers: pd.DataFrame, resamples: int = 400, seed: int = 0) -> pd.DataFrame:
    chose_a = answers.chosen_method == answers.method_a
    return pd.DataFrame(share_rows("brats", "a vs b", "share", chose_a, answers.reader, resamples, seed)).set_index(
        "metric")


def test_a_known_preference_is_recovered_within_its_intervals():
    """Three readers who each prefer A in 70 % of pairs: the exact per-reader intervals and the reader-clustered
    pooled interval cover 0.7 at about their 95 % rate."""
    generator = np.random.default_rng(1)
    covered_reader, covered_pooled, repetitions = 0, 0, 150
    for repetition in range(repetitions):
        shares = preference_shares(simulated_answers(generator, {"r1": 0.7, "r2": 0.7, "r3": 0.7}), seed=repetition)
        covered_reader += shares.lower["share[r1]"] <= 0.7 <= shares.upper["share[r1]"]
        covered_pooled += shares.lower["share"] <= 0.7 <= shares.upper["share"]
    assert covered_reader / repetitions >= 0.92
    assert 0.90 <= covered_pooled / repetitions <= 1.0


def test_no_preference_is_called_significant_at_most_at_the_stated_rate():
    generator = np.random.default_rng(2)
    readers_rejected, pooled_rejected, repetitions = 0, 0, 150
    for repetition in range(repetitions):
        shares = preference_shares(simulated_answers(generator, {"r1": 0.5, "r2": 0.5, "r3": 0.5}), seed=repetition)
        readers_rejected += sum(shares.value[f"share_p_value[{reader}]"] <= ALPHA for reader in ("r1", "r2", "r3"))
        pooled_rejected += not shares.lower["share"] <= 0.5 <= shares.upper["share"]
    assert readers_rejected / (3 * repetitions) <= ALPHA  # the exact test is conservative
    assert pooled_rejected / repetitions <= ALPHA + 0.03  # three binomial standard errors


def test_the_pooled_interval_widens_when_readers_disagree():
    """Answers of one reader are not independent: two readers at 0.9 and 0.5 give a wider pooled interval than
    the exact interval of their 216 answers taken as independent."""
    answers = simulated_answers(np.random.default_rng(3), {"r1": 0.9, "r2": 0.5})
    shares = preference_shares(answers)
    chose_a = int((answers.chosen_method == answers.method_a).sum())
    naive = stats.binomtest(chose_a, len(answers)).proportion_ci(0.95, method="exact")
    assert shares.upper["share"] - shares.lower["share"] > 1.5 * (naive.high - naive.low)


def test_bradley_terry_recovers_known_strengths():
    truth = np.array([-0.8, 0.0, 0.3, 0.5])
    generator = np.random.default_rng(4)
    winners, losers = [], []
    for first in range(4):
        for second in range(first + 1, 4):
            first_wins = generator.random(300) < 1 / (1 + np.exp(truth[second] - truth[first]))
            winners += np.where(first_wins, first, second).tolist()
            losers += np.where(first_wins, second, first).tolist()
    estimate = fit_bradley_terry(win_table(np.array(winners), np.array(losers), 4))
    np.testing.assert_allclose(estimate, truth - truth.mean(), atol=0.12)


def test_bradley_terry_rows_cover_the_strengths_of_simulated_readers():
    methods = {"m0": -0.6, "m1": 0.0, "m2": 0.6}
    generator = np.random.default_rng(5)
    rows = []
    for reader in ("r1", "r2", "r3"):
        for first, second in (("m0", "m1"), ("m0", "m2"), ("m1", "m2")):
            for item in range(60):
                chose_first = generator.random() < 1 / (1 + np.exp(methods[second] - methods[first]))
                rows.append({"reader": reader, "method_a": first, "method_b": second, "class": "healthy",
                             "item": item, "chosen_side": "left", "response_ms": 1000,
                             "chosen_method": first if chose_first else second})
    statistics = study_statistics("brats", pd.DataFrame(rows), resamples=200, seed=0)
    strengths = statistics[statistics.metric == "bradley_terry_log_strength"].set_index("method")
    for method, truth in methods.items():
        assert strengths.lower[method] <= truth <= strengths.upper[method]
    assert strengths.value["m0"] < strengths.value["m1"] < strengths.value["m2"]


def test_fleiss_kappa_of_the_published_example_and_of_perfect_agreement():
    """Fleiss (1971), as worked in Wikipedia's article: 10 subjects, 14 raters, 5 categories, kappa 0.210."""
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0], [0, 2]])) == pytest.approx(1.0)


def test_study_statistics_rows_flag_a_side_habit_and_agreement(tmp_path):
    answers = simulated_answers(np.random.default_rng(6), {"alice": 0.8, "bob": 0.8}, pairs_per_class=30,
                                left_bias={"bob": 0.6})
    answers.to_csv(tmp_path / "answers.csv", index=False)
    statistics = study_statistics("brats", read_answers(tmp_path / "answers.csv", "brats"), resamples=300, seed=0)
    rows = statistics.set_index(["method", "metric"])
    assert rows.value["all_comparisons", "reader_left_share_p_value[bob]"] < 0.01
    assert rows.value["all_comparisons", "reader_left_share_p_value[alice]"] > 0.05
    assert rows.n["selora_l1.00 vs cgan", "reader_preference_healthy"] == 60
    assert rows.lower["selora_l1.00 vs cgan", "reader_preference[alice]"] > 0.5
    assert -1 <= rows.value["selora_l1.00 vs cgan", "reader_fleiss_kappa"] <= 1
    assert 0.8 < rows.value["all_comparisons", "reader_median_seconds[alice]"] < 6
    assert not statistics.metric.str.startswith("bradley_terry").any()  # two methods: the share says it all
    statistics.to_csv(tmp_path / "statistics.csv", index=False)
    plot_reader_study(tmp_path / "statistics.csv", "brats", tmp_path / "figure.png")
    assert drawn_fraction(tmp_path / "figure.png") > 0.02
    answers.assign(dataset="picai").to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match="not of brats"):
        read_answers(tmp_path / "other.csv", "brats")

