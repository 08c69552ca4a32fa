"""``hds dataviews list|show|rename|delete`` (stored DataViews) and ``hds query stats``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hds_s3.cli.app import (
    CONTEXT_SETTINGS,
    Env,
    F,
    _table,
    _when,
    build_dataview,
    emit,
    pass_env,
    view_options,
    view_spec,
)

if TYPE_CHECKING:
    from hds_s3.query.dataview import DataView


def dataview_options(func: F) -> F:
    """Add ``--dataview NAME`` / ``--dataview-id ID``."""
    func = click.option("--dataview-id", "dataview_id", metavar="ID", help="The DataView, by id.")(func)
    return click.option(
        "--dataview", "dataview_name", metavar="NAME", help="The DataView, by name (the most recent one)."
    )(func)


def get_dataview(env: Env, name: str | None, ident: str | None) -> DataView:
    """Resolve ``--dataview`` / ``--dataview-id``.

    Raises:
        click.UsageError: neither or both given.
        DataViewNotFoundError: no such DataView.
    """
    from hds_s3.query.dataview import DataView

    if name is not None and ident is not None:
        raise click.UsageError("give --dataview NAME or --dataview-id ID, not both")
    if name is None and ident is None:
        raise click.UsageError("give the DataView: --dataview NAME or --dataview-id ID")
    return DataView.get(dataview_id=ident, dataview_name=name, client=env.client)


def dataview_info(view: DataView) -> dict[str, Any]:
    """A stored DataView as a JSON-ready dict (its definition)."""
    return view.get_definition()


@click.group("dataviews", context_settings=CONTEXT_SETTINGS)
def dataviews() -> None:
    """List, show, rename and delete the DataViews stored in the store."""


@dataviews.command("list")
@click.option("--pattern", default=None, metavar="REGEX", help="Only names matching this regex.")
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", help="Only views with this tag ('-TAG' excludes it)."
)
@pass_env
def dataviews_list(env: Env, pattern: str | None, tags: tuple[str, ...]) -> None:
    """List the stored DataViews, oldest first."""
    from hds_s3.query.dataview import DataView

    views = DataView.list_dataviews(pattern, list(tags), client=env.client)
    infos = [dataview_info(v) for v in views]
    rows = [
        (i["id"], i["name"], i["status"], len(i["queries"]), ",".join(i["tags"]), _when(i["created"]))
        for i in infos
    ]
    emit(env, infos, lambda: _table(rows, ["ID", "NAME", "STATUS", "RULES", "TAGS", "CREATED"]))


@dataviews.command("show")
@dataview_options
@pass_env
def dataviews_show(env: Env, dataview_name: str | None, dataview_id: str | None) -> None:
    """Show one stored DataView: its rules, mapping, labels and iteration settings (JSON)."""
    emit(env, dataview_info(get_dataview(env, dataview_name, dataview_id)))


@dataviews.command("rename")
@dataview_options
@click.argument("new_name")
@pass_env
def dataviews_rename(env: Env, dataview_name: str | None, dataview_id: str | None, new_name: str) -> None:
    """Rename a stored (draft) DataView to NEW_NAME."""
    view = get_dataview(env, dataview_name, dataview_id)
    old = view.name
    view.rename(new_name)
    emit(env, dataview_info(view), f"renamed DataView {old!r} ({view.id}) to {new_name!r}")


@dataviews.command("delete")
@dataview_options
@click.option("--yes", "-y", "yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def dataviews_delete(env: Env, dataview_name: str | None, dataview_id: str | None, yes: bool) -> None:
    """Delete a stored DataView (asks first unless --yes)."""
    view = get_dataview(env, dataview_name, dataview_id)
    ident, name = view.id, view.name
    if not yes:
        click.confirm(f"delete DataView {name!r} ({ident})?", abort=True, err=True)
    view.delete()
    emit(env, {"deleted": ident, "name": name}, f"deleted DataView {name!r} ({ident})")


_property_option = click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="NAME",
    help="Also count the values of this property: meta.<path>, sources.<field>, rois.<field>, context_id "
    "(repeat for several).",
)


@dataviews.command("stats")
@dataview_options
@_property_option
@pass_env
def dataviews_stats(
    env: Env, dataview_name: str | None, dataview_id: str | None, properties: tuple[str, ...]
) -> None:
    """Print a stored DataView's frame and ROI counts, labels after its mapping and --property counts."""
    stats = get_dataview(env, dataview_name, dataview_id).get_stats(list(properties))
    emit(env, stats, lambda: _stats_text(stats))


def _stats_text(stats: dict[str, Any]) -> str:
    lines = [f"frames: {stats['frames']}", f"rois: {stats['rois']}"]
    if stats["labels"]:
        lines += ["", _table([(r["name"], r["count"]) for r in stats["labels"]], ["LABEL", "ROIS"])]
    if len(stats["rules"]) > 1:
        rows = [
            (
                r["rule_index"],
                r["frames"],
                r["rois"],
                ", ".join(f"{x['name']}:{x['count']}" for x in r["labels"]),
            )
            for r in stats["rules"]
        ]
        lines += ["", _table(rows, ["RULE", "FRAMES", "ROIS", "LABELS"])]
    for name, dist in stats["properties"].items():
        counted: list[tuple[object, object]] = [(v["value"], v["count"]) for v in dist["values"]]
        if dist["missing"]:
            counted.append(("(missing)", dist["missing"]))
        lines += ["", _table(counted, [name.upper(), "COUNT"])]
    return "\n".join(lines)


@click.command("stats", context_settings=CONTEXT_SETTINGS)
@view_options
@_property_option
@pass_env
def query_stats(env: Env, /, properties: tuple[str, ...], **params: Any) -> None:
    """Print the DataView's frame and ROI counts, labels (total and per rule) and --property counts."""
    view = build_dataview(env, view_spec(params))
    stats = view.get_stats(list(properties))
    emit(env, stats, lambda: _stats_text(stats))
