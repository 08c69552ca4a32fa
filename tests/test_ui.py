"""``hds ui`` without a browser: every endpoint through Starlette's TestClient, on a store built here.

What a user depends on: the pages show what the library holds (counts, frames, ROIs, statistics,
queries with the library's own errors and caret), edits go through the library's update path and
are refused with the library's errors (published versions) or refused outright (read-only), and
a broken source shows a placeholder, never an error page.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the ui extra is not installed: pip install -e '.[ui-test]'")
pytest.importorskip("PIL", reason="the ui extra is not installed: pip install -e '.[ui-test]'")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2: pip install -e '.[ui-test]'")

import ui_data  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from hds_s3 import Dataset, DatasetVersion, DataView, connect  # noqa: E402
from hds_s3.client import Client  # noqa: E402
from hds_s3.errors import AlreadyExistsError, InvalidStateError, ValidationError  # noqa: E402
from hds_s3.query import lucene  # noqa: E402
from hds_s3.ui import create_app  # noqa: E402
from hds_s3.ui.app import STATIC  # noqa: E402


class Ui:
    """A TestClient on the app plus the ids of the test store's versions."""

    def __init__(self, client: Client, expected: dict[str, Any], write: bool) -> None:
        self.client = client
        self.expected = expected
        self.http = TestClient(create_app(client, write=write))
        streets = Dataset.get(dataset_name="streets", client=client)
        self.ds = streets.id
        self.v1 = streets.get_version(version_name="v1").id
        self.cur = streets.get_version(version_name="Current").id

    def url(self, version: str, tail: str = "") -> str:
        return f"/api/datasets/{self.ds}/versions/{version}{tail}"

    def get(self, path: str, code: int = 200, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == code, (path, response.status_code, response.text)
        return response.json()

    def send(self, method: str, path: str, body: Any = None, code: int = 200) -> Any:
        response = self.http.request(method, path, json=body if body is not None else {})
        assert response.status_code == code, (path, response.status_code, response.text)
        return response.json()

    def version(self, version_id: str) -> DatasetVersion:
        return Dataset.get(dataset_id=self.ds, client=self.client).get_version(version_id=version_id)


def _build(root: Path, write: bool) -> Ui:
    client = connect(str(root / "store"))
    expected = ui_data.build(client, root / "images")
    return Ui(client, expected, write)


@pytest.fixture(scope="module")
def ro(tmp_path_factory: pytest.TempPathFactory) -> Ui:
    """A read-only app: the tests using it change nothing."""
    return _build(tmp_path_factory.mktemp("ui_ro"), write=False)


@pytest.fixture
def rw(tmp_path: Path) -> Ui:
    """A fresh store and an app started with write=True."""
    return _build(tmp_path, write=True)


# ---------------------------------------------------------------------------- pages and assets


def test_index_and_every_module_it_imports_are_served(ro: Ui) -> None:
    page = ro.http.get("/")
    assert page.status_code == 200 and 'src="/static/js/app.js"' in page.text
    seen, todo = set(), ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        response = ro.http.get(f"/static/js/{name}")
        assert response.status_code == 200, name
        assert "javascript" in response.headers["content-type"]
        todo += re.findall(r'from "\./([\w.]+)"', response.text)
    assert seen == {p.name for p in (STATIC / "js").glob("*.js")}  # no module unused, none missing
    assert ro.http.get("/static/app.css").status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN


def test_info_says_read_only(ro: Ui) -> None:
    assert ro.get("/api/info") == {"store": ro.client.url, "write": False}


# ---------------------------------------------------------------------------- datasets and versions


def test_dataset_cards_and_search(ro: Ui) -> None:
    cards = {c["name"]: c for c in ro.get("/api/datasets")["datasets"]}
    assert set(cards) == {"streets", "rig"}
    streets = cards["streets"]
    v1 = ro.version(ro.v1).get_stats()
    assert streets["tags"] == ["street", "demo"] and streets["versions"] == 2
    assert (streets["frames"], streets["annotated"]) == (v1["frames"], v1["annotated"])
    assert streets["top_labels"] == v1["labels"][:5]
    assert cards["rig"]["frames"] == 4
    assert [c["name"] for c in ro.get("/api/datasets", search="multi-CAMERA")["datasets"]] == ["rig"]
    assert [c["name"] for c in ro.get("/api/datasets", search="three drives")["datasets"]] == ["streets"]
    assert ro.get("/api/datasets", search="nothing like it")["datasets"] == []


def test_version_tree(ro: Ui) -> None:
    tree = ro.get(f"/api/datasets/{ro.ds}")
    assert tree["current"] == ro.cur
    by_name = {v["name"]: v for v in tree["versions"]}
    assert by_name["v1"]["status"] == "published" and by_name["v1"]["parent"] is None
    assert by_name["Current"]["status"] == "draft" and by_name["Current"]["parent"] == ro.v1
    # who did what: the users the commits recorded
    v1 = ro.version(ro.v1)
    assert by_name["v1"]["created_by"] == v1.created_by and v1.created_by
    assert by_name["v1"]["published_by"] == v1.published_by and v1.published_by
    assert by_name["Current"]["published_by"] is None
    assert ro.get(f"/api/datasets/{'0' * 32}", code=404)["type"] == "NotFoundError"


def test_version_info_statistics_and_meta_fields(ro: Ui) -> None:
    info = ro.get(ro.url(ro.cur))
    assert info["stats"] == ro.version(ro.cur).get_stats()
    assert info["mask_labels"] == [{"value": [1, 1, 1], "labels": ["vehicle"]}]
    assert {"city", "score", "weather"} <= set(info["meta_fields"])
    assert info["children"] == [] and info["dataset"]["name"] == "streets"


def test_distribution_of_a_meta_field_over_filtered_frames(ro: Ui) -> None:
    cities = ro.get(ro.url(ro.v1, "/distribution"), field="meta.city")
    assert cities["kind"] == "text" and {v["name"]: v["count"] for v in cities["values"]} == {
        "bremen": 10,
        "berlin": 10,
        "hamburg": 10,
    }
    rain = ro.get(ro.url(ro.v1, "/distribution"), field="meta.city", q="meta.weather:rain")
    assert rain["frames"] == 6 and sum(v["count"] for v in rain["values"]) == 6
    score = ro.get(ro.url(ro.v1, "/distribution"), field="meta.score")
    assert score["kind"] == "number" and sum(b["count"] for b in score["bins"]) == 30
    assert ro.get(ro.url(ro.v1, "/distribution"), code=400, field="city")["type"] == "ValidationError"


# ---------------------------------------------------------------------------- the grid


def test_grid_pages_cover_every_frame_once_in_id_order(ro: Ui) -> None:
    ids = ro.version(ro.v1).get_frames_table(columns=["id"]).column("id").to_pylist()
    seen: list[str] = []
    for offset in range(0, 30, 7):
        page = ro.get(ro.url(ro.v1, "/frames"), offset=offset, limit=7)
        assert page["total"] == 30
        seen += [f["id"] for f in page["frames"]]
    assert seen == sorted(ids)


def test_grid_rows_carry_the_shapes_the_overlay_draws(ro: Ui) -> None:
    frames = ro.get(ro.url(ro.v1, "/frames"), limit=100)["frames"]
    shapes = {f["id"]: sum(1 for r in f["rois"] if r["type"] != "label") for f in frames}
    assert shapes == ro.expected["shapes_v1"]
    assert all(f["sources"][0]["width"] == ui_data.W for f in frames)


def test_grid_sorted_by_meta_field_and_grouped_by_context(ro: Ui) -> None:
    page = ro.get(ro.url(ro.v1, "/frames"), limit=100, sort="meta.score", desc=1)
    scores = [
        ro.version(ro.v1).get_single_frame(frame_id=f["id"]).metadata["score"] for f in page["frames"][:5]
    ]
    assert scores == sorted(scores, reverse=True) and scores[0] == round(29 / 30, 3)
    grouped = ro.get(ro.url(ro.v1, "/frames"), limit=100, sort="timestamp", desc=1, group=1)["frames"]
    contexts = [f["context_id"] for f in grouped]
    assert contexts == sorted(contexts)  # groups in order, each contiguous
    first = [f["timestamp"] for f in grouped if f["context_id"] == "drive-0"]
    assert first == sorted(first, reverse=True)
    assert ro.get(ro.url(ro.v1, "/frames"), code=400, sort="size")["type"] == "ValidationError"


def test_query_narrows_the_grid_like_a_dataview(ro: Ui) -> None:
    query = "meta.city:bremen AND NOT meta.weather:rain"
    view = DataView(client=ro.client)
    view.add_query(dataset_id=ro.ds, version_id=ro.v1, frame_query=query, roi_query="car")
    expected = sorted(f["id"] for f in view.to_dict(projection=["id"]))
    page = ro.get(ro.url(ro.v1, "/frames"), limit=100, q=query, roi="car", stats=1)
    assert [f["id"] for f in page["frames"]] == expected and page["total"] == len(expected) > 0
    assert page["stats"]["frames"] == len(expected)
    assert ro.get(ro.url(ro.v1, "/count"), q=query, roi="car") == {"count": len(expected), "of": 30}


@pytest.mark.parametrize(("param", "text"), [("q", "meta.city:bremen AND"), ("roi", "car OR (")])
def test_a_bad_query_answers_the_library_error_with_its_caret(ro: Ui, param: str, text: str) -> None:
    body = ro.get(ro.url(ro.v1, "/count"), code=400, **{param: text})
    with pytest.raises(ValidationError) as raised:
        lucene.make_filter(**{"frame_query" if param == "q" else "roi_query": text})
    assert body["error"] == str(raised.value) and body["type"] == "ValidationError"
    caret_line = body["error"].splitlines()[-1]
    assert caret_line.index("^") - 4 == body["position"]


# ---------------------------------------------------------------------------- one frame


def test_frame_position_and_navigation(ro: Ui) -> None:
    got = ro.get(ro.url(ro.v1, "/frame"), id="street-005")
    assert got["frame"] == ro.version(ro.v1).get_single_frame(frame_id="street-005").to_dict()
    assert (got["position"], got["total"], got["editable"]) == (5, 30, False)
    assert ro.get(ro.url(ro.v1, "/seek"), position=6) == {"position": 6, "id": "street-006"}
    # street-008 has no ROI: the next annotated frame after 7 is 9
    assert ro.get(ro.url(ro.v1, "/seek"), position=7, annotated=1)["id"] == "street-009"
    assert ro.get(ro.url(ro.v1, "/seek"), position=9, annotated=1, step=-1)["id"] == "street-007"
    assert ro.get(ro.url(ro.v1, "/seek"), code=404, position=30)["type"] == "NotFoundError"
    narrowed = ro.get(ro.url(ro.v1, "/frame"), id="street-005", q="meta.city:bremen")
    assert narrowed["position"] is None  # street-005 is in hamburg
    assert ro.get(ro.url(ro.v1, "/frame"), code=404, id="nope")["type"] == "NotFoundError"


def test_frame_history_along_the_ancestry(ro: Ui) -> None:
    changes = ro.get(ro.url(ro.cur, "/history"), id="street-002")["changes"]
    assert [(c["version_name"], c["change"]) for c in changes] == [("v1", "added"), ("Current", "changed")]
    gone = ro.get(ro.url(ro.cur, "/history"), id="street-000")["changes"]
    assert [(c["version_name"], c["change"]) for c in gone] == [("v1", "added"), ("Current", "deleted")]


def test_thumbnails_are_resized_server_side(ro: Ui) -> None:
    response = ro.http.get(ro.url(ro.v1, "/image"), params={"id": "street-003", "w": 100})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (100, 75)
    full = Image.open(io.BytesIO(ro.http.get(ro.url(ro.v1, "/image"), params={"id": "street-003"}).content))
    assert full.size == (ui_data.W, ui_data.H)  # never enlarged
    preview = ro.http.get(ro.url(ro.v1, "/image"), params={"id": "street-001", "kind": "preview"})
    assert Image.open(io.BytesIO(preview.content)).size == (ui_data.W // 4, ui_data.H // 4)


def test_masks_are_drawn_in_the_mask_label_colours(ro: Ui) -> None:
    response = ro.http.get(ro.url(ro.v1, "/image"), params={"id": "street-005", "kind": "mask"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(response.content))
    assert mask.mode == "RGBA"
    frame = ro.version(ro.v1).get_single_frame(frame_id="street-005")
    x0, y0, x1, y1 = (int(v) for v in frame.annotations[0].poly[0:2] + frame.annotations[0].poly[4:6])
    assert mask.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))[3] > 0  # the vehicle's pixels are coloured
    assert mask.getpixel((0, 0))[3] == 0  # the rest is transparent


def test_a_missing_source_is_a_placeholder_not_an_error(ro: Ui) -> None:
    response = ro.http.get(ro.url(ro.v1, "/image"), params={"id": ro.expected["missing_frame"], "w": 200})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert "does-not-exist.jpg" in response.headers["x-hds-missing"]
    assert Image.open(io.BytesIO(response.content)).width == 200
    no_mask = ro.http.get(ro.url(ro.v1, "/image"), params={"id": "street-003", "kind": "mask"})
    assert no_mask.status_code == 404 and "has no mask" in no_mask.json()["error"]


def test_diff_of_two_versions(ro: Ui) -> None:
    diff = ro.get(f"/api/datasets/{ro.ds}/diff", old=ro.v1, new=ro.cur)
    assert diff["counts"] == {"added": 1, "deleted": 2, "changed": 1}
    assert (diff["added"], diff["deleted"], diff["changed"]) == (
        ["street-030"],
        ["street-000", "street-001"],
        ["street-002"],
    )
    old, new = ro.version(ro.v1).get_stats(), ro.version(ro.cur).get_stats()
    before = {x["name"]: x["count"] for x in old["labels"]}
    after = {x["name"]: x["count"] for x in new["labels"]}
    assert diff["labels"] == [
        {"name": n, "old": before.get(n, 0), "new": after.get(n, 0)}
        for n in sorted(set(before) | set(after))
        if before.get(n, 0) != after.get(n, 0)
    ]
    same = ro.get(f"/api/datasets/{ro.ds}/diff", old=ro.v1, new=ro.v1)
    assert same["counts"] == {"added": 0, "deleted": 0, "changed": 0} and same["labels"] == []


# ---------------------------------------------------------------------------- writes


def _writes(ui: Ui) -> list[tuple[str, str, Any]]:
    frame = ui.get(ui.url(ui.cur, "/frame"), id="street-004")["frame"]
    return [
        ("POST", f"/api/datasets/{ui.ds}/versions", {"name": "child", "parent_id": ui.v1}),
        ("POST", ui.url(ui.cur, "/rename"), {"name": "renamed"}),
        ("POST", ui.url(ui.cur, "/publish"), None),
        ("POST", ui.url(ui.cur, "/delete"), {"force": True}),
        ("PUT", ui.url(ui.cur, "/metadata"), {"metadata": {"a": 1}}),
        ("PUT", ui.url(ui.cur, "/frame"), {"frame": frame}),
        ("POST", "/api/dataviews", {"name": "x", "dataset_id": ui.ds, "version_id": ui.cur}),
        ("POST", f"/api/dataviews/{'0' * 32}/rename", {"name": "y"}),
        ("POST", f"/api/dataviews/{'0' * 32}/delete", None),
    ]


def test_read_only_refuses_every_write_and_changes_nothing(ro: Ui) -> None:
    before = Dataset.get(dataset_id=ro.ds, client=ro.client)
    for method, path, body in _writes(ro):
        got = ro.send(method, path, body if body is not None else {}, code=403)
        assert got["type"] == "ReadOnlyError" and "hds ui --write" in got["error"], path
    after = Dataset.get(dataset_id=ro.ds, client=ro.client)
    assert after.last_update == before.last_update
    assert [v.name for v in after.get_versions()] == ["v1", "Current"]


def test_a_change_needs_a_json_request_and_the_right_host(rw: Ui) -> None:
    # what a form on another site can send without asking: refused, nothing changes
    form = rw.http.post(
        rw.url(rw.cur, "/rename"), content='{"name": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert form.status_code == 400 and "Content-Type: application/json" in form.json()["error"]
    assert rw.http.post(rw.url(rw.cur, "/publish")).status_code == 400
    assert rw.version(rw.cur).name == "Current" and rw.version(rw.cur).is_draft
    guarded = TestClient(create_app(rw.client, write=True, allowed_hosts=["127.0.0.1", "localhost"]))
    assert guarded.get("/api/info", headers={"Host": "evil.example:8765"}).status_code == 400
    assert guarded.get("/api/info", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_annotation_is_saved_with_the_library_update_path(rw: Ui) -> None:
    frame = rw.get(rw.url(rw.cur, "/frame"), id="street-004")["frame"]
    assert frame["rois"] == []
    box = {"id": None, "labels": ["dog"], "type": "box2d", "poly": [10, 20, 60, 20, 60, 70, 10, 70]}
    label = {"id": None, "labels": ["dusk"], "type": "label", "poly": []}
    frame["rois"] = [dict(box, confidence=0.7, sources=[], meta={"by": "ui"}, mask=None), dict(label)]
    saved = rw.send("PUT", rw.url(rw.cur, "/frame"), {"frame": frame})["frame"]
    stored = rw.version(rw.cur).get_single_frame(frame_id="street-004")
    assert saved == stored.to_dict()
    assert [(a.type, a.labels, a.metadata) for a in stored.annotations] == [
        ("box2d", ["dog"], {"by": "ui"}),
        ("label", ["dusk"], {}),
    ]
    assert rw.version(rw.v1).get_single_frame(frame_id="street-004").annotations == []  # parent untouched
    frame["rois"] = [dict(box, poly=[10, 20, 60, 25, 60, 70, 10, 70])]  # not a box
    bad = rw.send("PUT", rw.url(rw.cur, "/frame"), {"frame": frame}, code=400)
    assert "box2d must be the corners" in bad["error"] and bad["type"] == "ValidationError"
    assert len(rw.version(rw.cur).get_single_frame(frame_id="street-004").annotations) == 2  # unchanged


def test_edits_of_a_published_version_are_refused_with_the_library_error(rw: Ui) -> None:
    frame = rw.get(rw.url(rw.v1, "/frame"), id="street-004")["frame"]
    frame["rois"] = [{"labels": ["dog"], "type": "box2d", "poly": [1, 1, 5, 1, 5, 5, 1, 5]}]
    refused = rw.send("PUT", rw.url(rw.v1, "/frame"), {"frame": frame}, code=409)
    with pytest.raises(InvalidStateError) as raised:
        rw.version(rw.v1).update_frames([frame])
    assert refused == {"error": str(raised.value), "type": "InvalidStateError"}
    meta = rw.send("PUT", rw.url(rw.v1, "/metadata"), {"metadata": {"a": 1}}, code=409)
    assert "published" in meta["error"]
    assert rw.version(rw.v1).get_single_frame(frame_id="street-004").annotations == []


def test_version_actions_use_the_library_and_its_errors(rw: Ui) -> None:
    made = rw.send(
        "POST", f"/api/datasets/{rw.ds}/versions", {"name": "relabel", "parent_id": rw.v1}, code=201
    )
    assert rw.version(made["id"]).parent_id == rw.v1 and made["status"] == "draft"
    refused = rw.send("POST", f"/api/datasets/{rw.ds}/versions", {"name": "x", "parent_id": rw.cur}, code=409)
    assert refused["type"] == "InvalidStateError"
    taken = rw.send("POST", rw.url(made["id"], "/rename"), {"name": "v1"}, code=409)
    with pytest.raises(AlreadyExistsError) as raised:
        rw.version(made["id"]).set_version_name("v1")
    assert taken == {"error": str(raised.value), "type": "AlreadyExistsError"}
    assert rw.send("POST", rw.url(made["id"], "/rename"), {"name": "relabel 2"})["name"] == "relabel 2"
    assert rw.send("POST", rw.url(made["id"], "/publish"))["status"] == "published"
    assert rw.version(made["id"]).is_published
    refused = rw.send("POST", rw.url(rw.v1, "/delete"), {}, code=409)
    assert refused["type"] == "InvalidStateError" and "force" in refused["error"]
    rw.send("POST", rw.url(made["id"], "/delete"), {"force": True})
    names = [v.name for v in Dataset.get(dataset_id=rw.ds, client=rw.client).get_versions()]
    assert names == ["v1", "Current"]
    assert rw.send("PUT", rw.url(rw.cur, "/metadata"), {"metadata": {"k": [1, 2]}}) == {
        "metadata": {"k": [1, 2]}
    }
    assert rw.version(rw.cur).get_metadata() == {"k": [1, 2]}
    assert rw.send("PUT", rw.url(rw.cur, "/metadata"), {"metadata": {"a.b": 1}}, code=400)["type"] == (
        "ValidationError"
    )
    assert rw.send("POST", rw.url(rw.cur, "/rename"), "not an object", code=400)["type"] == "ValidationError"


def test_a_query_stored_as_a_dataview_is_listed_renamed_and_deleted(rw: Ui) -> None:
    body = {
        "name": "bremen cars",
        "dataset_id": rw.ds,
        "version_id": rw.v1,
        "frame_query": "meta.city:bremen",
    }
    stored = rw.send("POST", "/api/dataviews", dict(body, roi_query="car"), code=201)
    view = DataView.get(dataview_id=stored["id"], client=rw.client)
    direct = DataView(client=rw.client)
    direct.add_query(dataset_id=rw.ds, version_id=rw.v1, frame_query="meta.city:bremen", roi_query="car")
    assert view.get_count() == direct.get_count() > 0
    listed = rw.get("/api/dataviews")["dataviews"]
    assert [(v["name"], v["queries"][0]["frame_query"], v["queries"][0]["roi_query"]) for v in listed] == [
        ("bremen cars", "meta.city:bremen", "car")
    ]
    bad = rw.send("POST", "/api/dataviews", dict(body, frame_query="meta.city:("), code=400)
    assert bad["position"] is not None
    rw.send("POST", f"/api/dataviews/{stored['id']}/rename", {"name": "cars of bremen"})
    assert DataView.get(dataview_id=stored["id"], client=rw.client).name == "cars of bremen"
    assert [v["name"] for v in rw.get("/api/dataviews")["dataviews"]] == ["cars of bremen"]
    rw.send("POST", f"/api/dataviews/{stored['id']}/delete")
    assert rw.get("/api/dataviews")["dataviews"] == [] and DataView.list_dataviews(client=rw.client) == []
    gone = rw.send("POST", f"/api/dataviews/{stored['id']}/delete", code=404)
    assert gone["type"] == "DataViewNotFoundError"


# ---------------------------------------------------------------------------- the command


def test_hds_ui_command_serves_the_store(tmp_path: Path) -> None:
    ui_data.build(connect(str(tmp_path / "store")), tmp_path / "images")
    with ui_data.serve(tmp_path / "store", write=False) as url:
        import urllib.request

        with urllib.request.urlopen(url + "api/info", timeout=10) as response:
            assert response.status == 200 and b'"write":false' in response.read().replace(b" ", b"")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"/static/js/app.js" in response.read()


def test_hds_ui_reports_a_port_in_use(tmp_path: Path) -> None:
    with ui_data.serve(tmp_path / "store", write=False) as url:
        port = url.rstrip("/").rsplit(":", 1)[1]
        done = subprocess.run(
            [sys.executable, "-m", "hds_s3.cli", "--store", str(tmp_path / "store"), "ui", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"hds: error: cannot listen on 127.0.0.1:{port}")


def test_hds_ui_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from hds_s3.cli.app import cli

    for name in [n for n in sys.modules if n.split(".")[0] == "starlette" or n == "hds_s3.ui.app"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)  # as if the ui extra were not installed
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "store"), "ui", "--port", "0"])
    assert result.exit_code == 1
    assert "hds ui needs the ui extra (starlette is missing): pip install 'hds_s3[ui]'" in result.output
    assert "--write" in CliRunner().invoke(cli, ["ui", "--help"]).output
