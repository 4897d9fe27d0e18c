"""The reader-study page in headless Chromium against the real server (`python -m migros.reader_study serve`, a
separate process, so that it can be killed): readers answer with the keyboard, and every answer must be in the
database exactly once, whatever the reader, the network or the server does meanwhile.

Needs Playwright (the `test` extra) and the system Chromium (Debian `chromium`, or $CHROMIUM); skipped without.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reader_study_packs import bytes_name_a_method, make_pack, names_a_method, png_chunks

from migros.reader_study import cli
from migros.reader_study.pack_format import Pack
from migros.reader_study.statistics import study_statistics

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the test extra")
expect = playwright_api.expect
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs/images/reader_study.png"
CHROMIUM = next(filter(None, map(shutil.which, filter(None, (os.environ.get("CHROMIUM"), "chromium",
                                                                 "chromium-browser")))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (chromium, chromium-browser or $CHROMIUM): `apt-get install chromium`")
KEYS = {"left": ("ArrowLeft", "1"), "right": ("ArrowRight", "2")}
MIN_VIEWING_S = 0.25  # the page takes no answer in the first 200 ms a pair is shown (static/study.js)


class ServerProcess:
    """`migros-reader-study serve` on a pack and a database, started now; `url` once it listens."""

    def __init__(self, pack: Path, db: Path, port: int = 0, host: str = "127.0.0.1"):
        self.db = db
        self.log = db.with_suffix(f".{port}.log")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "migros.reader_study", "serve", str(pack), "--db", str(db), "--host", host,
                 "--port", str(port)], stdout=subprocess.PIPE, stderr=log, text=True)
        for line in self.process.stdout:
            if line.startswith("Serving at "):
                self.url = line.split()[-1].replace("0.0.0.0", "127.0.0.1")
                self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
                return
        raise AssertionError(f"the server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to save anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return make_pack(tmp_path_factory.mktemp("browser"), pairs_per_class=3, image_size=256)  # 6 pairs per reader


@pytest.fixture
def server(pack, tmp_path):
    running = ServerProcess(pack, tmp_path / "answers.sqlite")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        # Playwright adds --no-sandbox itself when it runs as root
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def rows(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as connection:
        return pd.read_sql("SELECT * FROM answers ORDER BY reader, trial", connection)


def progress(page) -> str:
    return page.locator("#progress").inner_text()


def wait_for_pair(page, number: int, total: int) -> None:
    """Until pair `number` is shown, both images loaded, and the page takes answers."""
    expect(page.locator("#progress")).to_have_text(f"{number} / {total}")
    expect(page.locator("#left")).to_be_enabled()
    page.wait_for_timeout(MIN_VIEWING_S * 1000)


def register(page, url: str, reader: str) -> None:
    """The start page with the keyboard only: type the id, Enter; then the calibration page."""
    page.goto(url)
    # Chromium may apply `autofocus` after the load event: keys typed before it would be lost
    expect(page.locator("#reader-id")).to_be_focused()
    page.keyboard.type(reader)
    page.keyboard.press("Enter")
    page.wait_for_selector("#calibration:not([hidden])")
    expect(page.locator("#reader")).to_have_text(reader)


def start_trials(page) -> None:
    page.keyboard.press("Enter")
    page.wait_for_selector("#trial:not([hidden])")


def answer_the_first_two_pairs(page, url: str, reader: str, key: str) -> None:
    """A new reader answers pairs 1 and 2 of 6 with `key` and is shown pair 3."""
    register(page, url, reader)
    start_trials(page)
    for number in (1, 2):
        wait_for_pair(page, number, 6)
        page.keyboard.press(key)
    wait_for_pair(page, 3, 6)


def test_a_reader_completes_the_study_with_the_keyboard_and_no_method_name_reaches_the_browser(
        server, page, pack, tmp_path):
    """Every request and response is recorded on its way (a route that fetches it and passes it on), with the
    console and each state of the page, and scanned for method names."""
    traffic, console, contents = [], [], []

    def record(route):
        response = route.fetch()
        traffic.append((route.request.url, route.request.post_data or "", response.headers.get("content-type", ""),
                        response.body()))
        route.fulfill(response=response)

    page.route("**/*", record)
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(str(error)))
    register(page, server.url, "alice")
    assert page.locator("#calibration img").count() == 18
    for image in page.locator("#calibration img").all():
        expect(image).to_have_js_property("naturalWidth", 256)
    contents.append(page.content())
    start_trials(page)
    total = len(Pack.load(pack).study["items"])
    pressed = []
    for number in range(1, total + 1):
        wait_for_pair(page, number, total)
        side = ("left", "right")[number % 2]
        key = KEYS[side][number // 2 % 2]  # arrows and digits both
        contents.append(page.content())
        if number == 2:
            page.screenshot(path=str(tmp_path / "pair.png"))
        page.keyboard.press(key)
        pressed.append(side)
    page.wait_for_selector("#done:not([hidden])")
    contents.append(page.content())
    assert progress(page) == f"{total} / {total}"

    stored = rows(server.db)
    assert stored.chosen_side.tolist() == pressed
    assert (stored.response_ms >= 200).all() and stored.reader.eq("alice").all()
    texts = [*contents, *console] + [f"{url} {post}" for url, post, _, _ in traffic] + [
        body.decode() for _, _, kind, body in traffic if not kind.startswith("image/")]
    assert [text for text in texts if names_a_method(text)] == []
    images = [body for _, _, kind, body in traffic if kind == "image/png"]
    assert len(images) == 18 + 2 * total
    assert all(set(png_chunks(image)) == {"IHDR", "IDAT", "IEND"} and not bytes_name_a_method(image)
               for image in images)
    assert not [text for text in console if "error" in text.lower()]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "pair.png", SCREENSHOT)


def test_a_double_press_stores_one_answer(server, page):
    register(page, server.url, "bob")
    start_trials(page)
    wait_for_pair(page, 1, 6)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("2")
    wait_for_pair(page, 2, 6)
    page.wait_for_timeout(300)  # a late second answer would have arrived by now
    assert rows(server.db).chosen_side.tolist() == ["left"]
    assert progress(page) == "2 / 6"


def link_token(db: Path, reader: str) -> str:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT token FROM readers WHERE reader = ?", (reader,)).fetchone()[0]


def next_left_image(db: Path, reader: str) -> str:
    with sqlite3.connect(db) as connection:
        token = connection.execute(
            "SELECT left_token FROM trials t WHERE reader = ? AND NOT EXISTS (SELECT 1 FROM answers a WHERE "
            "a.reader = t.reader AND a.trial = t.trial) ORDER BY trial LIMIT 1", (reader,)).fetchone()[0]
    return f"/img/{token}.png"


def test_a_reload_or_another_browser_resumes_at_the_next_unanswered_trial(server, page, browser):
    db = server.db
    answer_the_first_two_pairs(page, server.url, "carol", "ArrowRight")
    page.reload()
    wait_for_pair(page, 3, 6)  # straight back to the pairs: the calibration page is for the start only
    assert page.locator("#left-image").get_attribute("src") == next_left_image(db, "carol")
    other = browser.new_context().new_page()
    other.goto(page.url)
    wait_for_pair(other, 3, 6)
    assert other.locator("#left-image").get_attribute("src") == next_left_image(db, "carol")
    other.keyboard.press("1")
    wait_for_pair(other, 4, 6)
    page.keyboard.press("2")  # the first browser is one pair behind: its answer changes nothing, it catches up
    wait_for_pair(page, 4, 6)
    assert rows(db).chosen_side.tolist() == ["right", "right", "left"]
    other.context.close()


def test_a_killed_server_loses_no_answer_and_the_page_goes_on_after_its_restart(server, page, pack):
    db = server.db
    answer_the_first_two_pairs(page, server.url, "dan", "ArrowLeft")
    server.kill()
    assert rows(db).chosen_side.tolist() == ["left", "left"]
    page.keyboard.press("ArrowRight")
    expect(page.locator("#message")).to_contain_text("not saved")
    assert progress(page) == "3 / 6" and not page.locator("#right").is_disabled()
    restarted = ServerProcess(pack, db, port=server.port)
    try:
        page.keyboard.press("ArrowRight")
        wait_for_pair(page, 4, 6)
        assert rows(db).chosen_side.tolist() == ["left", "left", "right"]
        assert page.locator("#message").inner_text() == ""
    finally:
        restarted.stop()


def test_a_failed_answer_request_does_not_advance_the_page(server, page):
    db = server.db
    register(page, server.url, "erin")
    start_trials(page)
    wait_for_pair(page, 1, 6)
    page.route("**/answer", lambda route: route.abort())
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#message")).to_contain_text("not saved")
    assert progress(page) == "1 / 6" and rows(db).empty
    # the answer reaches the server but its reply is lost: the retry finds it stored and moves on, one row
    page.unroute("**/answer")
    page.route("**/answer", lambda route: (route.fetch(), route.abort()))
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(300)
    assert progress(page) == "1 / 6" and len(rows(db)) == 1
    page.unroute("**/answer")
    page.keyboard.press("ArrowRight")  # the stored answer stands: a retry cannot change it
    wait_for_pair(page, 2, 6)
    assert rows(db).chosen_side.tolist() == ["left"]


def test_pause_hides_the_images_and_stops_the_clock(server, page):
    register(page, server.url, "fay")
    start_trials(page)
    wait_for_pair(page, 1, 6)
    page.wait_for_timeout(300)
    page.keyboard.press("p")
    assert page.locator("#trial").is_hidden() and page.locator("#paused").is_visible()
    page.keyboard.press("ArrowLeft")  # no answer while paused
    page.wait_for_timeout(1500)
    page.keyboard.press(" ")
    assert page.locator("#left-image").is_visible()
    page.keyboard.press("ArrowLeft")
    wait_for_pair(page, 2, 6)
    (viewing_ms,) = rows(server.db).response_ms
    assert 500 <= viewing_ms < 1500


def test_on_a_network_a_readers_token_reaches_only_their_own_answers(pack, tmp_path, page):
    db = tmp_path / "answers.sqlite"
    server = ServerProcess(pack, db, host="0.0.0.0")
    try:
        page.goto(server.url)
        assert page.locator(".registration-closed").is_visible() and page.locator("#register").is_hidden()
        assert page.request.post(f"{server.url}api/readers", data={"reader": "mallory"}).status == 403
        links = {}
        for reader in ("alice", "bob"):
            cli.main(["add-reader", str(pack), reader, "--db", str(db), "--url", server.url])
            links[reader] = f"{server.url}r/{link_token(db, reader)}/"
        page.goto(links["alice"])
        page.wait_for_selector("#calibration:not([hidden])")
        start_trials(page)
        for number in (1, 2):
            wait_for_pair(page, number, 6)
            page.keyboard.press("ArrowLeft")
        wait_for_pair(page, 3, 6)
        alice = rows(db)

        bob_api = links["bob"].replace("/r/", "/api/r/")
        state = page.request.get(f"{bob_api}state").json()
        assert (state["reader"], state["answered"]) == ("bob", 0)
        # alice's answered trial numbers, sent with bob's token, reach bob's own trials only: out of order refused,
        # his first stored once
        statuses = [page.request.post(f"{bob_api}answer", data={"trial": trial, "side": "right", "response_ms": 1}
                                      ).status for trial in (1, 0, 0)]
        assert statuses == [409, 200, 200]
        assert page.request.get(f"{bob_api}state").json()["answered"] == 1
        pd.testing.assert_frame_equal(rows(db)[rows(db).reader == "alice"].reset_index(drop=True), alice)
        forged = links["alice"][:-12] + "A" * 11 + "/"  # alice's token with its end guessed wrong
        assert page.request.get(forged.replace("/r/", "/api/r/") + "state").status == 404
        assert page.request.get(forged).status == 404
        cross_site = page.request.post(f"{bob_api}answer", headers={"Origin": "http://elsewhere.example"},
                                       data={"trial": 1, "side": "left", "response_ms": 1})
        assert cross_site.status == 403
    finally:
        server.stop()


def simulate_reader(page, url: str, reader: str, preference: float, method_of: dict, first_method: str,
                    generator: np.random.Generator) -> None:
    """A reader who picks `first_method` in a `preference` share of the pairs, whichever side it is on; the
    method of an image comes from the pack's key, which only a simulation can read."""
    register(page, url, reader)
    start_trials(page)
    total = int(progress(page).split(" / ")[1])
    for number in range(1, total + 1):
        wait_for_pair(page, number, total)
        left = page.locator("#left-image").get_attribute("src").removeprefix("/img/").removesuffix(".png")
        first_is_left = method_of[left] == first_method
        side = "left" if (generator.random() < preference) == first_is_left else "right"
        page.keyboard.press(KEYS[side][number % 2])
    page.wait_for_selector("#done:not([hidden])")


def run_simulated_study(browser, url: str, pack: Path, db: Path, preferences: dict[str, float], out_csv: Path,
                        resamples: int) -> pd.DataFrame:
    """Readers with known preferences through the page one after the other, the answers exported with the command
    line and analysed as rule reader_study_statistics does."""
    key = Pack.load(pack).key
    method_of = {image["token"]: image["method"] for image in key["images"]}
    generator = np.random.default_rng(0)
    for reader, preference in preferences.items():
        context = browser.new_context()
        simulate_reader(context.new_page(), url, reader, preference, method_of, key["comparisons"][0][0], generator)
        context.close()
    assert cli.main(["export", str(pack), "--db", str(db), "--out", str(out_csv)]) == 0
    return study_statistics("brats", pd.read_csv(out_csv, dtype={"reader": str}), resamples, seed=0)


def test_two_simulated_readers_through_the_page_give_their_preference_back_in_the_export(browser, tmp_path):
    pack = make_pack(tmp_path, pairs_per_class=6)
    db = tmp_path / "answers.sqlite"
    server = ServerProcess(pack, db)
    try:
        statistics = run_simulated_study(browser, server.url, pack, db, {"r1": 0.9, "r2": 0.9},
                                         tmp_path / "answers.csv", resamples=500)
    finally:
        server.stop()
    exported = pd.read_csv(tmp_path / "answers.csv", dtype={"reader": str})
    stored = rows(db)
    pd.testing.assert_frame_equal(exported[stored.columns].sort_values(["reader", "trial"], ignore_index=True), stored)
    shares = statistics.set_index(["method", "metric"])
    pooled = shares.loc[("selora_l1.00 vs cgan", "reader_preference")]
    assert pooled.n == 24 and pooled.lower > 0.5 and pooled.lower <= 0.9 <= pooled.upper
    assert shares.loc[("all_comparisons", "reader_left_share"), "n"] == 24
