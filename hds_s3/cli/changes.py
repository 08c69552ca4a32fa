"""``hds versions diff`` and ``hds frames history``: what changed between versions, and when a frame did."""

from __future__ import annotations

import click

from hds_s3.cli.app import (
    CONTEXT_SETTINGS,
    Env,
    _table,
    dataset_options,
    emit,
    get_dataset,
    get_version,
    pass_env,
    version_options,
)


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


@click.command("diff", context_settings=CONTEXT_SETTINGS)
@dataset_options
@click.argument("base", metavar="BASE")
@click.argument("other", metavar="[OTHER]", required=False)
@click.option("--by-id", is_flag=True, help="BASE and OTHER are version ids, not names.")
@click.option(
    "--ids", "show_ids", is_flag=True, help="Also list the ids added (+), changed (~) and deleted (-)."
)
@pass_env
def versions_diff(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    base: str,
    other: str | None,
    by_id: bool,
    show_ids: bool,
) -> None:
    """Show what turns version BASE's frames into OTHER's [default: the current version].

    Frames added, changed (their content: sources, ROIs, metadata) and deleted, and the change of each
    label's ROI count. Only the segments the two versions do not share are read. --json prints the
    counts, the label changes and every id.
    """
    ds = get_dataset(env, dataset_name, dataset_id)
    a = ds.get_version(version_id=base) if by_id else ds.get_version(version_name=base)
    if other is None:
        b = ds.get_current()
    else:
        b = ds.get_version(version_id=other) if by_id else ds.get_version(version_name=other)
    result = a.diff(b)
    data = {"dataset": ds.name, "base": a.name, "other": b.name, **result.to_dict()}

    def text() -> str:
        c = result.counts
        lines = [
            f"{a.name!r} -> {b.name!r}: {c['added']} added, {c['changed']} changed, {c['deleted']} deleted "
            f"(frames {_signed(c['frames_delta'])})"
        ]
        if result.label_deltas:
            lines.append(
                "labels: " + ", ".join(f"{name} {_signed(n)}" for name, n in result.label_deltas.items())
            )
        if show_ids:
            for mark, ids in (("+", result.added), ("~", result.changed), ("-", result.deleted)):
                lines.extend(f"{mark} {i}" for i in ids.to_pylist())
        return "\n".join(lines)

    emit(env, data, text)


@click.command("history", context_settings=CONTEXT_SETTINGS)
@dataset_options
@version_options
@click.argument("frame_id", metavar="FRAME_ID")
@pass_env
def frames_history(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    frame_id: str,
) -> None:
    """List the versions, from the root to this one, in which FRAME_ID was added, changed or deleted.

    --json also gives the frame as each of those versions holds it.
    """
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    history = v.get_frame_history(frame_id)
    data = {
        "dataset": v.dataset_name,
        "version": v.name,
        "frame_id": frame_id,
        "history": [c.to_dict() for c in history],
    }

    def text() -> str:
        if not history:
            return f"frame {frame_id!r} was never in {v.dataset_name!r} / {v.name!r} or its ancestors"
        rows = [(c.version_name, c.status, c.change) for c in history]
        return _table(rows, ["VERSION", "STATUS", "CHANGE"])

    emit(env, data, text)
