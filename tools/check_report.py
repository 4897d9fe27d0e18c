#!/usr/bin/env python3
"""Open the Snakemake HTML report in headless Chromium, screenshot every table and figure and check what renders.

Usage: python tools/check_report.py [results/report.html] [--out results/report_check]

Needs Playwright (``pip install playwright==1.65.2``, in the ``test`` extra) and the system Chromium (Debian:
``apt-get install chromium``; another binary can be named with the environment variable CHROMIUM). Playwright drives
that binary through ``executable_path``; it downloads no browser (``playwright install`` is not needed).

How the report is navigated: a Snakemake 9 report is a single-page React app without URL routing. Every item is
embedded as a data URI in the global ``results`` object (path → name, mime_type, caption, labels, data_uri),
``categories`` maps category → subcategory → paths, and the global ``app`` component changes the view with
``app.setView({...})`` — exactly what the report's own "eye" buttons call. This script makes the same calls:
for each item it opens the item's category in the menu and shows the item (screenshot ``NN_<item>.png``), then
its description panel with the rendered caption (``NN_<item>_caption.png``). Tables are HTML pages shown in an
iframe whose DOM is read in the iframe's own frame; figures are ``<img>`` elements in the page.

Checks (failures): the app renders without JavaScript exceptions and lists every expected category
(``--expect-categories``); each figure is an ``<img>`` showing this item, loaded, with non-zero size; each HTML
page of the categories Datasets and Metrics holds a table with numbers, and no table anywhere has placeholders
(–, nan) but not one number; no caption or page shows unrendered Jinja (``{{``, ``{%``) or a reStructuredText
error; download-only items (CSV) decode and hold numbers. Warnings: content wider or taller than the window
(the report centres content, so an overflowing figure loses its left/top edge; a wide table needs scrolling),
tables with more placeholders than numbers, missing captions. Writes the screenshots and ``checks.json`` to the
output folder, prints a summary and exits 1 when a check failed (2 when the report, Chromium or Playwright is missing).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    from playwright.sync_api import ConsoleMessage, Error as PlaywrightError, Frame, Page, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ModuleNotFoundError:  # main() says how to install it; the helpers below stay importable for the tests
    sync_playwright = None

EXPECTED_CATEGORIES = ("Datasets", "Synthetic images", "Fine-tuning", "Memorisation", "Classifier", "Metrics",
                       "Configuration")
TABLE_CATEGORIES = ("Datasets", "Metrics")  # their HTML pages are tables of numbers
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
NUMBER = r"[-+−]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
# a number, optionally ± a spread, a 95 % interval "[lower, upper]" and a parenthesised remark
NUMERIC_CELL = re.compile(rf"[<>≈~≤≥]?\s*{NUMBER}\s*%?(\s*(±|\+/-)\s*{NUMBER}\s*%?)?"
                          rf"(\s*\[\s*{NUMBER}\s*,\s*{NUMBER}\s*\])?(\s*\(.*\))?")
PLACEHOLDER_CELLS = {"–", "—", "-", "nan", "n/a", "na", "none", "?"}
UNRENDERED_MARKUP = re.compile(r"\{\{|\}\}|\{%|%\}|System Message:|Unknown interpreted text role")
MAX_SCREENSHOT_SIDE = 8000  # px; keeps a runaway page from producing a gigantic PNG


@dataclass
class ItemResult:
    """The outcome of opening one report item (or the landing page)."""

    name: str
    kind: str
    screenshots: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium or chromium-browser on PATH; None when there is none."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser"]
    return next(filter(None, (shutil.which(candidate) for candidate in candidates if candidate)), None)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def is_numeric(cell: str) -> bool:
    return bool(NUMERIC_CELL.fullmatch(cell.strip()))


def unrendered_markup(text: str) -> list[str]:
    return sorted(set(UNRENDERED_MARKUP.findall(text)))


# JavaScript run in the report page: waits for CSS transitions (the menu animates its width and height) and a paint.
SETTLE = """Promise.allSettled(document.getAnimations().map(animation => animation.finished)).then(() =>
    new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done))))"""

# JavaScript run inside a table page's iframe: its tables' data cells and whether the page overflows the frame.
TABLE_PAGE_PROBE = """(() => {
    const root = document.documentElement;
    return {
        text: document.body ? document.body.innerText : "",
        scrollWidth: root.scrollWidth, scrollHeight: root.scrollHeight,
        frameWidth: window.innerWidth,
        tables: Array.from(document.querySelectorAll("table")).map(table => ({
            caption: (table.caption ? table.caption.innerText : "") ||
                     (table.previousElementSibling ? table.previousElementSibling.innerText : ""),
            rows: table.rows.length,
            cells: Array.from(table.querySelectorAll("td")).map(cell => cell.innerText.trim()),
        })),
    };
})()"""

# JavaScript run in the report page: the figure shown in the content area (the last child of the app's layout).
FIGURE_PROBE = """(() => {
    const content = document.querySelector("#app > div").lastElementChild;
    const image = content.querySelector("img");
    if (!image) return null;
    const box = image.getBoundingClientRect(), area = content.getBoundingClientRect();
    return {
        complete: image.complete, naturalWidth: image.naturalWidth, naturalHeight: image.naturalHeight,
        left: box.left, top: box.top, width: box.width, height: box.height,
        areaLeft: area.left, areaTop: area.top, areaWidth: area.width, areaHeight: area.height,
        navWidth: document.querySelector("#app nav").getBoundingClientRect().width,
        sourceIsItem: image.src === results[app.state.resultPath].data_uri,
    };
})()"""


class ReportChecker:
    """Opens each item of one report in the browser, screenshots it and records the checks."""

    def __init__(self, page: Page, report: Path, out: Path, width: int, height: int):
        self.page, self.report, self.out, self.width, self.height = page, report, out, width, height

    def open_landing_page(self, expected_categories: tuple[str, ...]) -> ItemResult:
        result = ItemResult("landing page", "page")
        self.page.goto(self.report.resolve().as_uri())
        self._wait_for(
            "document.readyState === 'complete' && typeof app !== 'undefined' && "
            "document.querySelector('#loading-screen').style.display === 'none' && "
            "document.querySelector('#app nav') !== null", "the report app to render")
        self._screenshot(result, "00_landing.png")
        menu = self.page.evaluate("document.querySelector('#app nav').textContent")
        found = self.page.evaluate("Object.keys(categories)")
        result.details.append(f"{len(found)} categories: {', '.join(found)}")
        for category in expected_categories:
            if category not in found:
                result.failures.append(f"category {category!r} is missing from the report")
            elif category not in menu:
                result.failures.append(f"category {category!r} is not shown in the menu")
        description = self.page.evaluate("document.querySelector('#app > div').lastElementChild.innerText")
        if markup := unrendered_markup(description):
            result.failures.append(f"workflow description shows unrendered markup {markup}")
        return result

    def items(self) -> list[dict]:
        """Every report item with its category and subcategory, in menu order."""
        return self.page.evaluate("""Object.entries(categories).flatMap(([category, subcategories]) =>
            Object.keys(subcategories).sort((a, b) => a.localeCompare(b)).flatMap(subcategory =>
                subcategories[subcategory].map(path => ({
                    path, category, subcategory, name: results[path].name, mime: results[path].mime_type,
                    caption: results[path].caption, labels: results[path].labels || {},
                    isDataUri: results[path].data_uri.startsWith("data:"),
                }))))""")

    def check_item(self, number: int, item: dict) -> ItemResult:
        labels = ", ".join(str(value) for value in item["labels"].values()) or item["name"]
        kind = "figure" if item["mime"] in IMAGE_TYPES else "html page" if item["mime"] == "text/html" else "download"
        result = ItemResult(f"{item['category']} / {item['subcategory']} / {labels}", kind)
        if markup := unrendered_markup(item["caption"] or ""):
            result.failures.append(f"caption shows unrendered markup {markup}")
        if not item["caption"]:
            result.warnings.append("no caption")
        if not item["isDataUri"]:
            result.failures.append("item is not embedded as a data URI (use a single-file .html report)")
            return result
        stem = "_".join([f"{number:02d}", *map(slug, (item["category"], item["subcategory"], labels))])
        try:
            self._inspect(item, result, stem)
        except (PlaywrightError, RuntimeError, TimeoutError) as error:
            result.failures.append(f"could not be checked: {error}")
        return result

    def _inspect(self, item: dict, result: ItemResult, stem: str) -> None:
        path = json.dumps(item["path"])
        if result.kind == "download":
            self._check_download(result, self.page.evaluate(f"results[{path}].data_uri"), item["mime"])
            return
        if result.kind == "figure":
            self._show(item, "img")
            self._check_figure(result, stem)
        else:
            self._show(item, "html")
            self._check_html_page(result, stem, needs_table=item["category"] in TABLE_CATEGORIES)
        self.page.evaluate(f"app.setView({{navbarMode: 'resultinfo', resultPath: {path}}})")
        # textContent: the panel's headings are upper-cased by CSS, which innerText would reflect
        self._wait_for("document.querySelector('#app nav').textContent.includes('Snakemake rule')",
                       "the description panel")
        self._settle()
        nav_height = self.page.evaluate("document.querySelector('#app nav').scrollHeight")
        self._set_viewport(self.width, max(self.height, nav_height))
        self._screenshot(result, f"{stem}_caption.png")
        self._set_viewport(self.width, self.height)

    def _show(self, item: dict, content: str) -> None:
        """Open the item's category in the menu, then show the item as its "eye" button does."""
        category, subcategory, path = (json.dumps(item[key]) for key in ("category", "subcategory", "path"))
        # one call: React batches state updates, so a second setView would read the state before the first
        self.page.evaluate(
            f"app.setView({{navbarMode: 'subcategory', category: {category}, subcategory: {subcategory}, "
            f"content: {json.dumps(content)}, contentPath: results[{path}].data_uri, resultPath: {path}}})")
        self._wait_for(f"app.state.resultPath === {path} && app.state.content === {json.dumps(content)} "
                       "&& app.state.navbarMode === 'subcategory'", f"{item['path']} to open")
        self._settle()

    def _check_figure(self, result: ItemResult, stem: str) -> None:
        self._wait_for(f"(() => {{ const p = {FIGURE_PROBE}; return p && p.complete; }})()", "the figure to load")
        probe = self.page.evaluate(FIGURE_PROBE)
        result.details.append(f"<img> {probe['naturalWidth']}×{probe['naturalHeight']} px, shown "
                              f"{probe['width']:.0f}×{probe['height']:.0f}")
        if not probe["sourceIsItem"]:
            result.failures.append("the <img> shown is not this item")
        if min(probe["naturalWidth"], probe["naturalHeight"], probe["width"], probe["height"]) <= 0:
            result.failures.append("the figure has zero size (image did not decode or is hidden)")
        if probe["left"] < probe["areaLeft"] - 1 or probe["width"] > probe["areaWidth"]:
            result.warnings.append(f"figure {probe['width']:.0f} px wide, view {probe['areaWidth']:.0f} px at a "
                                   f"{self.width}×{self.height} window: its left edge is cut off")
        if probe["top"] < probe["areaTop"] - 1 or probe["height"] > probe["areaHeight"]:
            result.warnings.append(f"figure {probe['height']:.0f} px tall, view {probe['areaHeight']:.0f} px at a "
                                   f"{self.width}×{self.height} window: its top edge is cut off")
        self._set_viewport(max(self.width, int(probe["navWidth"] + probe["width"]) + 48),
                           max(self.height, int(probe["height"]) + 48))
        self._screenshot(result, f"{stem}.png")
        self._set_viewport(self.width, self.height)

    def _check_html_page(self, result: ItemResult, stem: str, needs_table: bool) -> None:
        frame = self._content_frame()
        self._wait_for("document.readyState === 'complete' && document.body !== null && "
                       "document.body.innerText.trim().length > 0", "the page to load", frame)
        probe = frame.evaluate(TABLE_PAGE_PROBE)
        if markup := unrendered_markup(probe["text"]):
            result.failures.append(f"page shows unrendered markup {markup}")
        total_numeric = 0
        for index, table in enumerate(probe["tables"], 1):
            numeric = sum(map(is_numeric, table["cells"]))
            placeholders = sum(cell.lower() in PLACEHOLDER_CELLS for cell in table["cells"])
            total_numeric += numeric
            label = f"table {index}" + (f" ({table['caption'][:50]!r})" if table["caption"] else "")
            result.details.append(f"{label}: {table['rows']} rows, {numeric}/{len(table['cells'])} numeric cells"
                                  + (f", {placeholders} placeholders" if placeholders else ""))
            if numeric == 0 and placeholders:
                result.failures.append(f"{label}: placeholders where numbers should be, no numeric cell")
            elif placeholders > numeric:
                result.warnings.append(f"{label}: more placeholder cells ({placeholders}) than numbers ({numeric})")
        if not probe["tables"]:
            result.details.append(f"no table; {len(probe['text'])} characters of text")
        if needs_table and total_numeric == 0:
            result.failures.append("no table with a number on the page" if probe["tables"]
                                   else "no <table> on the page")
        overflow_width = probe["scrollWidth"] - probe["frameWidth"]
        if overflow_width > 1:
            result.warnings.append(f"page {probe['scrollWidth']} px wide in a {probe['frameWidth']} px frame at a "
                                   f"{self.width}×{self.height} window: needs horizontal scrolling")
        self._set_viewport(self.width + max(overflow_width, 0), max(self.height, probe["scrollHeight"] + 16))
        self._screenshot(result, f"{stem}.png")
        self._set_viewport(self.width, self.height)

    @staticmethod
    def _check_download(result: ItemResult, data_uri: str, mime: str) -> None:
        """A download-only item: the embedded content decodes and, for CSV, holds numbers."""
        text = base64.b64decode(data_uri.split("base64,", 1)[1]).decode("utf-8", errors="replace")
        if not text.strip():
            result.failures.append("the embedded file is empty")
        elif mime == "text/csv":
            rows = list(csv.reader(io.StringIO(text)))
            numeric = sum(is_numeric(cell) for row in rows[1:] for cell in row)
            result.details.append(f"CSV {len(rows) - 1} rows × {len(rows[0])} columns, {numeric} numeric cells "
                                  "(download only: the viewer does not display CSV)")
            if numeric == 0:
                result.failures.append("the CSV holds no numbers")

    def _screenshot(self, result: ItemResult, filename: str) -> None:
        self._settle()
        self.page.screenshot(path=self.out / filename)
        result.screenshots.append(filename)

    def _wait_for(self, expression: str, what: str, frame: Frame | None = None) -> None:
        """Wait until a JavaScript condition is true in the page (or in ``frame``), tested at every animation frame."""
        try:
            (frame or self.page).wait_for_function(expression)
        except PlaywrightTimeoutError as error:
            raise TimeoutError(f"timed out waiting for {what}") from error

    def _settle(self) -> None:
        self.page.evaluate(SETTLE)

    def _set_viewport(self, width: int, height: int) -> None:
        self.page.set_viewport_size({"width": min(width, MAX_SCREENSHOT_SIDE),
                                     "height": min(height, MAX_SCREENSHOT_SIDE)})

    def _content_frame(self) -> Frame:
        """The frame of the page's (single) iframe, in which an HTML item is shown."""
        frames = self.page.main_frame.child_frames
        if len(frames) != 1:
            raise RuntimeError(f"expected one iframe, found {len(frames)}")
        return frames[0]


def check_report(report: Path, out: Path, chromium: str, width: int = 1440, height: int = 900,
                 timeout: float = 60, expected_categories: tuple[str, ...] = EXPECTED_CATEGORIES) -> list[ItemResult]:
    """Open ``report`` in headless Chromium, screenshot and check the landing page and every item into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    exceptions, console_errors = set(), set()  # JavaScript exceptions fail the landing page, console errors warn

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.add(message.text[:300])

    # Playwright adds --no-sandbox and --disable-dev-shm-usage itself; its --hide-scrollbars is left out, so that
    # screenshots show a table's scrollbar as a desktop browser does
    with sync_playwright() as playwright, playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--disable-gpu"], ignore_default_args=["--hide-scrollbars"],
            timeout=timeout * 1000) as browser:
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.set_default_timeout(timeout * 1000)
        page.on("pageerror", lambda error: exceptions.add(error.stack or error.message))
        page.on("console", on_console)
        checker = ReportChecker(page, report, out, width, height)
        results = [checker.open_landing_page(expected_categories)]
        results += [checker.check_item(number, item) for number, item in enumerate(checker.items(), 1)]
    results[0].failures += [f"JavaScript exception: {text}" for text in sorted(exceptions)]
    results[0].warnings += [f"console error: {text}" for text in sorted(console_errors)]
    (out / "checks.json").write_text(json.dumps([asdict(result) | {"passed": result.passed} for result in results],
                                                indent=2, ensure_ascii=False))
    return results


def print_summary(results: list[ItemResult], out: Path) -> None:
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        print(f"{status}  {result.name}  [{result.kind}]  {', '.join(result.screenshots)}")
        for line in result.details:
            print(f"        {line}")
        for line in result.failures:
            print(f"   FAIL {line}")
        for line in result.warnings:
            print(f"   WARN {line}")
    items = results[1:]
    kinds = {kind: sum(item.kind == kind for item in items) for kind in sorted({item.kind for item in items})}
    failed = sum(not result.passed for result in results)
    print(f"\n{len(items)} items ({', '.join(f'{n} {kind}' for kind, n in kinds.items())}) + landing page: "
          f"{len(results) - failed} passed, {failed} failed, {sum(len(r.warnings) for r in results)} warnings; "
          f"screenshots and checks.json in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", type=Path, default=Path("results/report.html"))
    parser.add_argument("--out", type=Path, default=Path("results/report_check"), help="screenshot folder")
    parser.add_argument("--width", type=int, default=1440, help="browser window width in px")
    parser.add_argument("--height", type=int, default=900, help="browser window height in px")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for any one page state")
    parser.add_argument("--expect-categories", default=",".join(EXPECTED_CATEGORIES),
                        help="comma-separated categories the report must have (default: this pipeline's)")
    args = parser.parse_args()
    if not args.report.is_file():
        parser.exit(2, f"check_report: {args.report} not found; write it with "
                       f"`snakemake --report {args.report}` after the run.\n")
    chromium = find_chromium()
    if chromium is None:
        parser.exit(2, "check_report: no Chromium found (tried $CHROMIUM, chromium, chromium-browser). Install it "
                       "with `apt-get install chromium` (Debian package) or set CHROMIUM=/path/to/chrome.\n")
    if sync_playwright is None:
        parser.exit(2, "check_report: Playwright is not installed. Install it with `pip install playwright==1.65.2` "
                       "(or `pip install -e '.[test]'`); it drives the system Chromium, no `playwright install`.\n")
    expected = tuple(filter(None, (name.strip() for name in args.expect_categories.split(","))))
    results = check_report(args.report, args.out, chromium, args.width, args.height, args.timeout, expected)
    print_summary(results, args.out)
    sys.exit(0 if all(result.passed for result in results) else 1)


if __name__ == "__main__":
    main()
