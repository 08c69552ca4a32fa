"""``hds ui`` in a real browser: headless Chromium driven by Playwright against ``hds ui`` run as a process.

The store is built here (generated images as ``file://`` sources, see ``ui_data``). The browser is
the system's Chromium (Debian's ``chromium`` package), never one Playwright downloads; without it,
or without Playwright, every test here skips with the reason. Screenshots go to
``$HDS_UI_SCREENSHOTS`` when set (``docs/screenshots`` regenerates the README's), else to a
temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the ui extra is not installed: pip install -e '.[ui-test]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install playwright"
)

import ui_data  # noqa: E402

from hds_s3 import Dataset, connect  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Site:
    """The running ``hds ui`` and what the store holds."""

    def __init__(self, url: str, store: Path, expected: dict[str, Any]) -> None:
        self.url = url
        self.client = connect(str(store))
        self.expected = expected
        streets = Dataset.get(dataset_name="streets", client=self.client)
        self.ds = streets.id
        self.v1 = streets.get_version(version_name="v1").id
        self.cur = streets.get_version(version_name="Current").id

    def version(self, version_id: str) -> Any:
        return Dataset.get(dataset_id=self.ds, client=self.client).get_version(version_id=version_id)

    def at(self, hash_path: str) -> str:
        return f"{self.url}#{hash_path}"


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The store and ``hds ui`` (after the browser: without one nothing is built)."""
    root = tmp_path_factory.mktemp("ui_browser")
    if os.environ.get("HDS_UI_SCREENSHOTS"):  # the README's pictures show a plain path, not pytest's
        root = Path(tempfile.gettempdir()) / "hds-ui-demo"
        shutil.rmtree(root, ignore_errors=True)
    expected = ui_data.build(connect(str(root / "store")), root / "images")
    with ui_data.serve(root / "store", write=True) as url:
        yield Site(url, root / "store", expected)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium found (install Debian's chromium package: apt-get install chromium)")
    with sync_api.sync_playwright() as play:
        try:
            launched = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("HDS_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Page:
    """A browser page that records console errors and failed requests."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: d.accept())

    def open(self, url: str, page_name: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_selector(f"body[data-page='{page_name}']")
        self.page.wait_for_load_state("networkidle")
        return self.page

    def go(self, url: str, page_name: str) -> Any:
        """Navigate within the app (hash change) and wait for the page to render."""
        before = self.page.evaluate("document.body.dataset.ready || ''")
        self.page.evaluate("url => { location.href = url; }", url)
        self.page.wait_for_function(
            "([before, name]) => document.body.dataset.ready !== before"
            " && document.body.dataset.page === name",
            arg=[before, page_name],
        )
        self.page.wait_for_load_state("networkidle")
        return self.page

    def shot(self, path: Path) -> None:
        """A screenshot once every image in view has loaded (lazy thumbnails included)."""
        self.page.wait_for_function(
            "[...document.images].filter(i => i.getAttribute('src') && i.offsetParent !== null"
            " && i.getBoundingClientRect().top < innerHeight).every(i => i.complete && i.naturalWidth > 0)"
        )
        self.page.screenshot(path=str(path))

    def images_loaded(self, selector: str) -> int:
        return int(
            self.page.evaluate(
                "sel => [...document.querySelectorAll(sel)]"
                ".filter(i => i.complete && i.naturalWidth > 0).length",
                selector,
            )
        )


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    opened = Page(browser)
    yield opened
    opened.page.close()
    assert opened.errors == [], opened.errors


def test_every_page_loads_without_console_errors(site: Site, page: Page, shots: Path) -> None:
    p = page.open(site.url, "datasets")
    assert p.locator(".dscard").count() == 2
    assert p.locator(".dscard[data-dataset='streets'] .frames").inner_text() == "30"
    page.shot(shots / "datasets.png")
    p.fill("#search", "camera")
    p.wait_for_function("document.querySelectorAll('.dscard').length === 1")

    p = page.go(site.at(f"/d/{site.ds}"), "tree")
    assert p.locator("#tree .node").count() == 2 and p.locator("#tree .edge").count() == 1
    page.shot(shots / "version-tree.png")

    p = page.go(site.at(f"/d/{site.ds}/v/{site.cur}/frames"), "version")
    assert p.locator(".tile").count() == site.expected["current_frames"]
    page.shot(shots / "frames-grid.png")

    p = page.go(site.at(f"/d/{site.ds}/v/{site.v1}/stats"), "version")
    p.wait_for_selector("#distribution svg")
    assert p.locator("#chart-labels svg rect").count() == len(site.version(site.v1).get_stats()["labels"])
    page.shot(shots / "statistics.png")

    p = page.go(site.at(f"/d/{site.ds}/v/{site.v1}/info"), "version")
    assert '"mask_labels"' in p.locator("#metadata").input_value()

    p = page.go(site.at(f"/d/{site.ds}/v/{site.cur}/frame?id=street-006"), "viewer")
    p.wait_for_function("document.querySelector('#frame-image').naturalWidth > 0")
    assert p.locator("#overlay .roi").count() == site.expected["shapes_v1"]["street-006"] == 2
    assert p.locator("#roi-list .roiitem").count() == 2
    assert [t.replace(" ×", "") for t in p.locator("#frame-labels .chip").all_inner_texts()] == ["night"]
    p.wait_for_selector("#history a")
    assert p.locator("#history").inner_text() == "v1 · added (published)"
    page.shot(shots / "frame-viewer.png")

    # the annotator's test, when it ran first on this worker's site, changed one frame more
    want = site.version(site.v1).diff(site.version(site.cur)).to_dict()
    assert (len(want["added"]), len(want["deleted"])) == (1, 2) and 1 <= len(want["changed"]) <= 2
    p = page.go(site.at(f"/d/{site.ds}/diff?old={site.v1}&new={site.cur}"), "diff")
    for kind in ("added", "deleted", "changed"):
        assert p.locator(f"#diff-{kind} b").inner_text() == str(len(want[kind])), kind
    page.shot(shots / "diff.png")

    p = page.go(site.at("/dataviews"), "dataviews")
    p.wait_for_selector("#dataviews, #no-dataviews")

    p = page.go(site.at(f"/d/{'0' * 32}"), "tree")  # a dataset that does not exist: the library's message
    assert "no dataset" in p.locator("#view .error").inner_text().lower()
    page.errors = [e for e in page.errors if "404" not in e]  # the refused request itself


def test_grid_shows_every_thumbnail_with_its_overlay_shapes(site: Site, page: Page) -> None:
    p = page.open(site.at(f"/d/{site.ds}/v/{site.v1}/frames"), "version")
    tiles = p.locator(".tile")
    assert tiles.count() == site.expected["v1_frames"]
    p.wait_for_function("[...document.querySelectorAll('.thumb img:not(.mask)')].every(i => i.complete)")
    assert page.images_loaded(".thumb img:not(.mask)") == site.expected["v1_frames"]  # the missing one too
    shapes = p.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.tile')]"
        ".map(t => [t.dataset.frame, t.querySelectorAll('svg .roi').length]))"
    )
    assert shapes == site.expected["shapes_v1"]
    assert p.locator(".thumb img.mask").count() == 2  # the frames with a mask
    total = sum(shapes.values())
    car = site.version(site.v1).get_stats()["labels"]
    cars = next(x["count"] for x in car if x["name"] == "car")
    p.click(".chip[data-label='car']")  # hide the cars
    assert p.locator(".tile svg .roi").count() == total - cars
    p.click(".chip[data-label='car']")
    p.click("button[data-toggle='rois']")  # hide every ROI
    assert p.locator(".tile svg .roi").count() == 0


def test_a_query_narrows_the_grid_and_a_bad_query_shows_the_caret(
    site: Site, page: Page, shots: Path
) -> None:
    p = page.open(site.at(f"/d/{site.ds}/v/{site.v1}/frames"), "version")
    p.fill("#frame-query", "meta.city:bremen")
    p.fill("#roi-query", "car")
    p.click("#run-query")
    p.wait_for_function("location.hash.includes('q=meta.city')")
    p.wait_for_selector("body[data-page='version']")
    p.wait_for_function("document.querySelector('#frame-query').value === 'meta.city:bremen'")
    p.wait_for_load_state("networkidle")
    view = site.version(site.v1)
    from hds_s3 import DataView

    dv = DataView(client=site.client)
    dv.add_query(dataset_id=site.ds, version_id=site.v1, frame_query="meta.city:bremen", roi_query="car")
    expected = sorted(f["id"] for f in dv.to_dict(projection=["id"]))
    assert 0 < len(expected) < view.get_frame_count()
    p.wait_for_function(f"document.querySelectorAll('.tile').length === {len(expected)}")
    assert p.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.frame)") == expected
    assert p.locator("#count").inner_text() == f"{len(expected)} of 30 frames"

    p.fill("#frame-query", "meta.city:bremen AND")
    p.press("#frame-query", "Enter")
    caret = p.locator("#query-error .caret")
    caret.wait_for()
    assert caret.inner_text() == "meta.city:bremen AND\n" + " " * 20 + "^"
    assert "syntax error" in p.locator("#query-error .error").inner_text()
    assert "bad" in (p.locator("#frame-query").get_attribute("class") or "")
    assert p.locator(".tile").count() == len(expected)  # the grid keeps the last good query
    page.shot(shots / "query-error.png")
    page.errors = [e for e in page.errors if "400" not in e]  # the refused query itself


def _drag(p: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    box = p.locator("#stage").bounding_box()
    p.mouse.move(box["x"] + start[0], box["y"] + start[1])
    p.mouse.down()
    p.mouse.move(box["x"] + (start[0] + end[0]) / 2, box["y"] + (start[1] + end[1]) / 2)
    p.mouse.move(box["x"] + end[0], box["y"] + end[1])
    p.mouse.up()


def test_an_roi_drawn_in_the_annotator_is_in_the_draft(site: Site, page: Page, shots: Path) -> None:
    assert site.version(site.cur).get_single_frame(frame_id="street-004").annotations == []
    p = page.open(site.at(f"/d/{site.ds}/v/{site.cur}/frame?id=street-004"), "viewer")
    p.wait_for_function("document.querySelector('#frame-image').naturalWidth > 0")
    p.fill("#new-label", "dog")
    p.press("#new-label", "Tab")
    p.click("button[data-tool='rect']")
    _drag(p, (300, 150), (600, 400))
    assert p.locator("#overlay .roi").count() == 1
    p.click("#undo")
    assert p.locator("#overlay .roi").count() == 0
    p.click("#redo")
    assert p.locator("#overlay .roi").count() == 1
    p.click("button[data-tool='poly']")
    box = p.locator("#stage").bounding_box()
    for x, y in ((650, 150), (800, 180), (760, 350)):
        p.mouse.click(box["x"] + x, box["y"] + y)
    p.keyboard.press("Enter")
    assert p.locator("#overlay .roi").count() == 2
    p.fill("#add-frame-label", "dusk")
    p.press("#add-frame-label", "Enter")
    page.shot(shots / "annotator.png")
    p.click("#save-frame")
    p.wait_for_selector("#toast:not([hidden])")
    assert p.locator("#toast").inner_text() == "Frame saved"
    stored = site.version(site.cur).get_single_frame(frame_id="street-004")
    kinds = sorted((a.type, tuple(a.labels)) for a in stored.annotations)
    assert kinds == [("box2d", ("dog",)), ("label", ("dusk",)), ("poly2d", ("dog",))]
    rect = next(a for a in stored.annotations if a.type == "box2d")
    x0, y0, x1, _, _, y1, _, _ = rect.poly
    assert 0 <= x0 < x1 <= ui_data.W and 0 <= y0 < y1 <= ui_data.H and x1 - x0 > 20
    assert site.version(site.v1).get_single_frame(frame_id="street-004").annotations == []


def test_a_published_version_refuses_edits(site: Site, page: Page) -> None:
    p = page.open(site.at(f"/d/{site.ds}/v/{site.v1}/frame?id=street-008"), "viewer")
    assert "published" in p.locator("#published-note").inner_text()
    p.click("button[data-tool='rect']")
    _drag(p, (300, 150), (600, 400))
    p.click("#save-frame")
    p.wait_for_selector("#toast.bad:not([hidden])")
    message = p.locator("#toast").inner_text()
    assert message.startswith("cannot update frames in version 'v1' of dataset 'streets': it is published")
    assert site.version(site.v1).get_single_frame(frame_id="street-008").annotations == []
    page.errors = [e for e in page.errors if "409" not in e]  # the refused save itself


def test_a_saved_query_is_a_dataview_listed_renamed_and_deleted(site: Site, page: Page, shots: Path) -> None:
    from hds_s3 import DataView

    p = page.open(site.at(f"/d/{site.ds}/v/{site.v1}/frames?q=meta.weather%3Arain"), "version")
    p.click("#save-view")
    p.fill(".modal input[name='name']", "rainy frames")
    p.click(".modal button[type='submit']")
    p.wait_for_selector("#toast:not([hidden])")
    assert p.locator("#toast").inner_text() == "Stored DataView rainy frames"
    [stored] = [v for v in DataView.list_dataviews(client=site.client) if v.name == "rainy frames"]
    assert stored.get_queries()[0].frame_query == "meta.weather:rain" and stored.get_count() == 6

    p = page.go(site.at("/dataviews"), "dataviews")
    row = p.locator("tr[data-dataview='rainy frames']")
    assert "meta.weather:rain" in row.inner_text()
    page.shot(shots / "dataviews.png")
    row.locator("button", has_text="Rename").click()
    p.fill(".modal input[name='name']", "rain")
    p.click(".modal button[type='submit']")
    p.wait_for_selector("tr[data-dataview='rain']")
    assert DataView.get(dataview_id=stored.id, client=site.client).name == "rain"
    p.locator("tr[data-dataview='rain'] button", has_text="Delete").click()
    p.click(".modal button[type='submit']")
    p.wait_for_selector("#no-dataviews")
    assert [v.name for v in DataView.list_dataviews(client=site.client)] == []


def test_version_tree_actions(site: Site, page: Page) -> None:
    p = page.open(site.at(f"/d/{site.ds}"), "tree")
    p.click("#tree .node[data-version='v1']")
    p.locator(".side button", has_text="Create child").click()
    p.fill(".modal input[name='name']", "relabel")
    p.click(".modal button[type='submit']")
    p.wait_for_selector("#tree .node[data-version='relabel']")
    assert p.locator("#tree .edge").count() == 2
    relabel = Dataset.get(dataset_id=site.ds, client=site.client).get_version(version_name="relabel")
    assert relabel.parent_id == site.v1 and relabel.is_draft
    p.click("#tree .node[data-version='relabel']")
    p.locator(".side button", has_text="Delete").click()
    p.click(".modal button[type='submit']")
    p.wait_for_function("!document.querySelector(\"#tree .node[data-version='relabel']\")")
    names = [v.name for v in Dataset.get(dataset_id=site.ds, client=site.client).get_versions()]
    assert names == ["v1", "Current"]
    p.click("#tree .node[data-version='v1']")
    p.locator(".side button", has_text="Delete").click()
    p.click(".modal button[type='submit']")  # without force: the library refuses
    p.wait_for_selector("#toast.bad:not([hidden])")
    assert "force" in p.locator("#toast").inner_text()
    page.errors = [e for e in page.errors if "409" not in e]


def test_a_frame_group_shows_each_of_its_sources(site: Site, page: Page) -> None:
    rig = Dataset.get(dataset_name="rig", client=site.client)
    current = rig.get_current()
    p = page.open(site.at(f"/d/{rig.id}/v/{current.id}/frame?id=rig-2"), "viewer")
    assert p.locator("button[data-source]").all_inner_texts() == ["source front", "source rear"]
    p.wait_for_function("document.querySelector('#frame-image').naturalWidth > 0")
    front = p.locator("#frame-image").get_attribute("src")
    assert p.locator("#overlay .roi").count() == 1  # the ROI spans both sources
    p.click("button[data-source='rear']")
    p.wait_for_function("document.querySelector('#frame-image').naturalWidth > 0")
    assert p.locator("#frame-image").get_attribute("src") != front and "source=rear" in (
        p.locator("#frame-image").get_attribute("src") or ""
    )
    assert p.locator("#overlay .roi").count() == 1
