"""``hds ui``: serve the frame browser and annotator from this process (see :mod:`hds_s3.ui`)."""

from __future__ import annotations

import sys

import click

from hds_s3.cli.app import CONTEXT_SETTINGS, CommandError, Env
from hds_s3.client import connect


@click.command("ui", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="The store to browse [default: hds --store, else $HDS_STORE, else the embedded folder].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port."
)
@click.option(
    "--write",
    is_flag=True,
    help="Allow changes (rename, publish, create, delete versions; metadata; annotation of drafts).",
)
@click.pass_obj
def ui(env: Env, store_url: str | None, host: str, port: int, write: bool) -> None:
    """Browse datasets, versions and frames in the browser; annotate drafts with --write.

    Prints the URL once the server listens ("hds ui: serving <store> at <url>") and runs until
    Ctrl-C. Needs the ui extra: pip install 'hds_s3[ui]'.
    """
    try:
        from hds_s3.ui import serve
        from hds_s3.ui.app import create_app  # noqa: F401 - fail here when the extra is missing
    except ImportError as exc:
        raise CommandError(
            f"hds ui needs the ui extra ({(exc.name or 'a package').split('.')[0]} is missing): "
            "pip install 'hds_s3[ui]'"
        ) from None
    client = connect(store_url) if store_url is not None else env.client
    mode = "read-write" if write else "read-only"

    def ready(url: str) -> None:
        click.echo(f"hds ui: serving {client.url} ({mode}) at {url}")
        sys.stdout.flush()

    try:
        serve(client, host=host, port=port, write=write, on_ready=ready)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


__all__ = ["ui"]
