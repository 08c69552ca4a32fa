"""The ``hds`` command: datasets, versions, frames, queries and COCO files from a shell.

A thin layer over the Python API: every command resolves its dataset and version, calls the API and
prints the result as text, or as JSON with ``hds --json``. Which store: ``--store URL``
(``s3://bucket/prefix``, a folder, ``memory://name``), else ``HDS_STORE``, else the embedded local
folder (see :mod:`hds_s3.client`).

Naming, the same for every command: ``--dataset/-d NAME`` or ``--dataset-id ID``; ``--version/-v
NAME`` or ``--version-id ID`` (``datasets create`` and ``versions create`` take the new name the
same way; the name as an argument still works, with a deprecation note). Without a version, a
command uses the dataset's current version (:data:`CURRENT_RULE`); a command that writes to it
says so on stderr, and ``versions create`` says when the current version moves. Like the Python
``create*`` calls, ``create`` uses an existing dataset or version (``--fail-if-exists``: an error).

Errors: one error handler (:class:`HdsGroup`) turns every failure into a :class:`CommandError`:
``hds: error: <message>`` on stderr (a query error adds the query and a caret under its bad
token, each on its own line), then ``hds: hint: <next step>`` when there is one; with ``--json``,
one JSON object ``{"error": {"type", "message", "hint"}}`` on stderr instead. Library messages
that advise a Python call are reworded for the shell (``_API_HINTS``). ``--debug`` shows the
traceback. Exit codes: 0 on success; 1 for every failure (``fsck`` finding damage, ``gc``
failing to remove something and a refused confirmation included); 2 for usage errors.
:func:`main` ends the process with ``os._exit`` once output is flushed (see its docstring).

Destructive commands (``datasets delete``, ``versions delete``, ``gc --delete`` and ``fsck
--repair`` when they have something to change) ask at a terminal and need ``--yes`` otherwise.
Exports count their frames first, so progress bars have a total, and write files with the user's
umask. Shell completion is click's (``_HDS_COMPLETE=bash_source hds``), with dataset and version
names read from the store.

``query`` commands (and ``coco export`` with a query) build a :class:`~hds_s3.query.dataview.DataView`:
each ``--dataset`` (or ``--dataset-id``) starts one OR-ed rule; ``--version``, ``--roi-query``,
``--frame-query``, ``--source-query`` and ``--weight`` are given once (the same for every rule) or
once per rule in the order of the ``--dataset`` flags, ``''`` meaning none for that rule.
``--view FILE`` reads rules (``add_query``'s keywords) and iteration options from JSON.

``frames add`` reads JSON Lines (one frame dict per line, the form of
:func:`hds_s3.model.frames.to_frame_dict`) or Parquet (as ``frames export`` writes it: the frame columns,
metadata as JSON text). It is all or nothing for bad input: the file is read and every frame checked
first, in bounded memory, and any malformed line or invalid frame stops the command before anything
is written, naming the line (or row) and the reason; ``--skip-invalid`` adds the valid frames and
lists the others instead (and fails when none is valid). The frames are then streamed into the
version with ``add_frames`` (batches of Parquet segments), so an interrupted add keeps what it
committed and can be re-run: frames are replaced by id, never duplicated. Provenance fields in
the input (``saved``, ``saved_in_version``, ``updated_in_version``) are ignored: the version
records its own.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from hds_s3.cli.lazy import LazyAttribute
from hds_s3.client import Client, connect, default_store_url
from hds_s3.errors import (
    ConflictError,
    CorruptObjectError,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.model.limits import MAX_FRAME_BYTES, parse_json

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from hds_s3.api import Dataset, DatasetVersion
    from hds_s3.query.dataview import DataView
else:  # imported by the commands that use them: `hds --help` loads neither the API nor pyarrow
    Dataset = LazyAttribute("hds_s3.api", "Dataset")
    DatasetVersion = LazyAttribute("hds_s3.api", "DatasetVersion")

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Frames read and checked at a time by ``frames add`` (bounded memory).
BATCH_ROWS = 4096

#: The longest line of JSON Lines ``frames add`` reads, in bytes: twice a frame's limit, room for
#: spacing and escapes; a longer line is skipped unread and reported.
MAX_LINE_BYTES = 2 * MAX_FRAME_BYTES

_PROVENANCE = ("saved", "saved_in_version", "updated_in_version")
_DERIVED = ("labels", "roi_count", "meta_str", "meta_num")
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


# ---------------------------------------------------------------------------- plumbing

#: What ``hds --help`` and ``hds versions list`` say about the version a command uses by default.
CURRENT_RULE = (
    "the current version is the draft farthest from the root (the newest of them on ties); "
    "with no draft, the most recently published version"
)

EXIT_CODES = """\b
Exit codes:
  0  success
  1  an error: one line 'hds: error: ...' on stderr (with --json one JSON object
     {"error": {"type": ..., "message": ..., "hint": ...}}); also fsck finding damage,
     gc failing to remove something, a refused confirmation
  2  a usage error (a wrong or missing option or argument)

\b
Naming: --dataset/-d NAME or --dataset-id ID; --version/-v NAME or --version-id ID.
Without --version a command uses the current version: the draft farthest from the root
(the newest on ties), else the latest published one; commands that write say which.
Shell completion: eval "$(_HDS_COMPLETE=bash_source hds)" (zsh_source, fish_source)."""


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 frame``, ``2 frames`` (``many`` for an irregular plural)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


class CommandError(click.ClickException):
    """A failure shown as ``hds: error: <message>`` (and its hint) on stderr, or as JSON under ``--json``.

    Attributes:
        kind: the error's type in ``--json`` output (an hds_s3 error class name, ``UsageError``,
            ``NotConfirmed``, ``DamageFound``, ``FileError`` or ``UnexpectedError``).
        hint: what to do next, phrased for the shell, or None.
        lines: lines shown under the message in text (a query and the caret under its bad token).
        as_json: set by the group when ``--json`` was given.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        kind: str = "Error",
        hint: str | None = None,
        lines: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.kind, self.hint, self.lines = kind, hint, tuple(lines)
        self.as_json = False

    def to_dict(self) -> dict[str, Any]:
        """The error as ``--json`` prints it: ``{"error": {"type", "message", "hint"}}``."""
        return {"error": {"type": self.kind, "message": self.message, "hint": self.hint}}

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error on stderr: one JSON object with ``--json``, else text lines."""
        if self.as_json:
            click.echo(_dumps(self.to_dict(), None), err=True, file=file)
            return
        click.echo(f"hds: error: {self.message}", err=True, file=file)
        for line in self.lines:
            click.echo(line, err=True, file=file)
        if self.hint:
            click.echo(f"hds: hint: {self.hint}", err=True, file=file)


class UsageFailure(CommandError):
    """A usage error shown as JSON under ``--json`` (exit code 2, as click's usage errors)."""

    exit_code = 2


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip()) or "failed"


#: Advice in library messages that names Python calls, and the same advice for the shell.
_API_HINTS = (
    ("pass dry_run=False to remove", "run with --delete to remove"),
    ("pass delete_all_versions=True, force=True", "pass --all-versions --force"),
    ("pass delete_all_versions=True", "pass --all-versions"),
    ("pass force=True", "pass --force"),
    ("create it with Dataset.create()", "create it with hds datasets create --dataset NAME"),
    ("create one with create_version()", "create one with hds versions create --version NAME"),
    (
        "create a child version with create_version() and change that",
        "create a child version with hds versions create --parent NAME --version NEW and change that",
    ),
    (
        "use publish_version() and create_version() instead",
        "use hds versions publish and hds versions create --parent NAME instead",
    ),
    (
        "check the store with hds_s3.tools.fsck.fsck() (hds fsck from a shell)",
        "check the store with hds fsck",
    ),
    ("fsck(repair=True)", "hds fsck --repair"),
    ("run fsck for details", "run hds fsck for details"),
)


def _cli_words(text: str) -> str:
    """A library message with its advice worded for the shell (the matching ``hds`` commands and flags)."""
    for api, flag in _API_HINTS:
        text = text.replace(api, flag)
    return text


def _hint_for(exc: HdsError, message: str) -> str | None:
    """The next step for an error of this kind, when its message does not already say it."""
    if isinstance(exc, NotFoundError) and "hds " not in message:
        if "no dataset" in message:
            return "hds datasets list shows the datasets"
        if "version" in message:
            return "hds versions list --dataset NAME shows a dataset's versions"
    if isinstance(exc, (CorruptObjectError, StorageError)) and "hds fsck" not in message:
        if any(word in message for word in ("segment", "manifest", "dataset.json")):
            return "hds fsck checks the whole store and says what is damaged"
    if isinstance(exc, ConflictError):
        return "nothing was changed; run the command again"
    return None


def describe(exc: BaseException) -> CommandError:
    """The :class:`CommandError` the CLI shows for an exception raised by a command.

    An hds_s3 error keeps its class name as the kind and its message, with Python advice reworded
    for the shell; a query error's caret display goes under the message. A file error names the file.
    Anything else is an ``UnexpectedError``.
    """
    if isinstance(exc, HdsError):
        text = _cli_words(str(exc))
        lines = text.splitlines()
        shown: tuple[str, ...] = ()
        if len(lines) >= 3 and lines[-1].strip() == "^":  # a query, and the caret under its bad token
            lines, shown = lines[:-2], (lines[-2], lines[-1])
        message = _one_line("\n".join(lines))
        return CommandError(message, kind=type(exc).__name__, hint=_hint_for(exc, message), lines=shown)
    if isinstance(exc, OSError) and exc.filename is not None:
        return CommandError(_one_line(f"{exc.strerror or exc}: {exc.filename}"), kind="FileError")
    return CommandError(
        _one_line(f"unexpected {type(exc).__name__}: {exc}"),
        kind="UnexpectedError",
        hint="run with --debug for the traceback",
    )


def _wants_json(ctx: click.Context | None, args: Sequence[str] = ()) -> bool:
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, Env):
        return root.obj.as_json
    if root is not None and root.params.get("as_json"):
        return True
    return "--json" in args


def _usage_failure(exc: click.ClickException, as_json: bool) -> CommandError:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "hds"
    usage = isinstance(exc, click.UsageError)
    failure = (UsageFailure if usage else CommandError)(
        exc.format_message(),
        kind="UsageError" if usage else "Error",
        hint=f"{where} --help shows the usage" if usage else None,
    )
    failure.as_json = as_json
    return failure


class HdsGroup(click.Group):
    """The top-level group: every exception becomes a :class:`CommandError` (unless ``--debug``).

    Usage errors keep click's text form and exit code 2; with ``--json`` they are JSON too.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Parse the global options; a usage error in them is JSON too when ``--json`` is among them.

        Raises:
            click.UsageError: a malformed global option (as :class:`CommandError` under ``--json``).
        """
        given = list(args)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if not _wants_json(None, given):
                raise
            raise _usage_failure(exc, True) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; see the class docstring for what happens to errors.

        Raises:
            click.ClickException: every failure (or the original exception with ``--debug``).
        """
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except CommandError as exc:
            exc.as_json = _wants_json(ctx)
            raise
        except click.ClickException as exc:
            if not _wants_json(ctx):
                raise
            raise _usage_failure(exc, True) from exc
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            failure = describe(exc)
            failure.as_json = _wants_json(ctx)
            raise failure from exc


@dataclass
class Env:
    """What the global options chose; reached by commands through ``click.pass_obj``."""

    store: str
    as_json: bool = False
    debug: bool = False
    progress: bool | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        """The client of ``--store`` (connected on first use).

        Raises:
            ValidationError: the store URL has an unsupported form.
        """
        if self._client is None:
            self._client = connect(self.store)
        return self._client

    @property
    def show_progress(self) -> bool:
        """Whether to draw progress bars: ``--progress`` / ``--no-progress``, else when stderr is a tty."""
        return self.progress if self.progress is not None else sys.stderr.isatty()


pass_env = click.make_pass_decorator(Env)


def _dumps(data: Any, indent: int | None = 2) -> str:
    """JSON text: indented, or compact on one line (``indent=None``, for JSON Lines)."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(data, indent=indent, separators=separators, ensure_ascii=False, default=str)


def emit(env: Env, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Print ``data`` as JSON under ``--json`` (or when there is no text form), else ``text``."""
    if env.as_json or text is None:
        click.echo(_dumps(data))
    else:
        click.echo(text() if callable(text) else text)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[("-" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _json_object(value: str, what: str) -> dict[str, Any]:
    """Parse a JSON object given inline or as ``@path``.

    Raises:
        click.BadParameter: not readable, not JSON, or not an object.
    """
    source = "the value"
    if value.startswith("@"):
        source = value[1:]
        try:
            value = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {source!r}: {exc.strerror or exc}", param_hint=what
            ) from None
    try:
        data = parse_json(value)
    except ValidationError as exc:
        raise click.BadParameter(f"{source}: {exc}", param_hint=what) from None
    if not isinstance(data, dict):
        raise click.BadParameter(
            f"{source} must be a JSON object, got {type(data).__name__}", param_hint=what
        )
    return data


def note(env: Env, text: str) -> None:
    """Say something to the user on stderr (``hds: <text>``); nothing under ``--json``."""
    if not env.as_json:
        click.echo(f"hds: {text}", err=True)


def _root_client(ctx: click.Context) -> Client:
    store = ctx.find_root().params.get("store")
    return connect(store or default_store_url())


def complete_datasets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a dataset name: the names in the store of ``--store`` (none if it fails)."""
    from click.shell_completion import CompletionItem

    try:
        names = [d.name for d in Dataset.list_datasets(client=_root_client(ctx))]
    except (HdsError, OSError):
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_versions(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a version name of the dataset given before it (none if it fails)."""
    from click.shell_completion import CompletionItem

    given = ctx.params.get("dataset_name") or ctx.params.get("q_datasets")
    name = given[-1] if isinstance(given, (tuple, list)) and given else given
    if not isinstance(name, str):
        return []
    try:
        versions = Dataset.get(dataset_name=name, client=_root_client(ctx)).get_versions()
    except (HdsError, OSError):
        return []
    return [CompletionItem(v.name) for v in versions if v.name.startswith(incomplete)]


def dataset_options(func: F) -> F:
    """Add ``--dataset/-d NAME`` / ``--dataset-id ID``."""
    func = click.option("--dataset-id", "dataset_id", metavar="ID", help="The dataset, by id.")(func)
    return click.option(
        "--dataset",
        "-d",
        "dataset_name",
        metavar="NAME",
        help="The dataset, by name.",
        shell_complete=complete_datasets,
    )(func)


def version_options(func: F) -> F:
    """Add ``--version/-v NAME`` / ``--version-id ID`` (default: the current version)."""
    func = click.option("--version-id", "version_id", metavar="ID", help="The version, by id.")(func)
    return click.option(
        "--version",
        "-v",
        "version_name",
        metavar="NAME",
        help="The version, by name [default: the current version].",
        shell_complete=complete_versions,
    )(func)


_yes_option = click.option(
    "--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal)."
)


def confirm(yes: bool, action: str) -> None:
    """Go on when ``--yes`` was given or the user confirms ``action`` at the terminal; else refuse.

    Raises:
        CommandError: not confirmed (``NotConfirmed``): the answer was no, or stdin is not a terminal
            and ``--yes`` is absent. Nothing has been changed.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(
            f"not confirmed: {action} (stdin is not a terminal to ask on); nothing was changed",
            kind="NotConfirmed",
            hint="pass --yes to confirm",
        )
    if not click.confirm(f"{action[:1].upper()}{action[1:]}?", default=False, err=True):
        raise CommandError(f"not confirmed: {action}; nothing was changed", kind="NotConfirmed")


def get_dataset(env: Env, name: str | None, ident: str | None) -> Dataset:
    """Resolve ``--dataset`` / ``--dataset-id``.

    Raises:
        click.UsageError: neither or both given.
        NotFoundError: no such dataset.
    """
    if name is not None and ident is not None:
        raise click.UsageError("give --dataset NAME or --dataset-id ID, not both")
    if name is None and ident is None:
        raise click.UsageError("give the dataset: --dataset NAME or --dataset-id ID")
    return Dataset.get(dataset_name=name, dataset_id=ident, client=env.client)


def get_version(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    *,
    required: bool = False,
    writes: str | None = None,
) -> DatasetVersion:
    """Resolve the dataset and ``--version`` / ``--version-id`` (the current version when neither).

    ``writes`` says what the command does to the version (e.g. ``"adding frames to"``): when the
    version is the current one by default, the command says which version that is (on stderr).

    Raises:
        click.UsageError: both given, or neither when ``required``.
        NotFoundError: no such dataset or version.
    """
    if version_name is not None and version_id is not None:
        raise click.UsageError("give --version NAME or --version-id ID, not both")
    if required and version_name is None and version_id is None:
        raise click.UsageError("give the version: --version NAME or --version-id ID")
    v = get_dataset(env, dataset_name, dataset_id).get_version(version_name, version_id)
    if writes is not None and version_name is None and version_id is None:
        note(
            env,
            f"{writes} {v.dataset_name!r} / {v.name!r} [{v.status}], the current version "
            "(no --version given; see hds versions list)",
        )
    return v


def _version_from(version_name: str | None, version_id: str | None) -> str:
    """How the version was chosen, for ``--json`` output of writing commands."""
    return (
        "--version" if version_name is not None else "--version-id" if version_id is not None else "current"
    )


def _require_draft(version: DatasetVersion, action: str) -> None:
    if not version.is_draft:
        raise InvalidStateError(
            f"cannot {action} version {version.name!r} of dataset {version.dataset_name!r}: it is published; "
            "use a draft (hds versions create --parent ..., or hds versions snapshot)"
        )


def _progress(env: Env, desc: str, total: int | None = None, unit: str = "frame") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not env.show_progress, file=sys.stderr)


# ---------------------------------------------------------------------------- descriptions


def _current(ds: Dataset) -> DatasetVersion | None:
    try:
        return ds.get_current()
    except NotFoundError:
        return None


def dataset_info(ds: Dataset) -> dict[str, Any]:
    """A dataset as a JSON-ready dict.

    Raises:
        NotFoundError: the dataset was deleted meanwhile.
    """
    head = _current(ds)
    return {
        "id": ds.id,
        "name": ds.name,
        "description": ds.description,
        "project": ds.project,
        "tags": ds.tags,
        "metadata": ds.get_metadata(),
        "created": ds.created,
        "last_update": ds.last_update,
        "version_count": ds.version_count,
        "paradigm": ds.paradigm,
        "current_version": None if head is None else {"id": head.id, "name": head.name},
    }


def version_info(v: DatasetVersion, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A version as a JSON-ready dict (``names`` maps version ids to names, for the parent)."""
    return {
        "id": v.id,
        "name": v.name,
        "status": v.status,
        "parent_id": v.parent_id,
        "parent": (names or {}).get(v.parent_id or "", None),
        "dataset": v.dataset_name,
        "dataset_id": v.dataset_id,
        "comment": v.comment,
        "tags": v.tags,
        "created": v.created,
        "published": v.published,
        "created_by": v.created_by or None,
        "published_by": v.published_by,
    }


def frame_count(v: DatasetVersion) -> int:
    """The version's frame count: from its stored statistics when published, else counted.

    Raises:
        CorruptObjectError: a segment is missing or damaged.
    """
    counts = v.published_counts  # kept with the version: no read per version of a large tree
    if counts is not None and isinstance(counts.get("frames"), int):
        return int(counts["frames"])
    stored = v.stored_stats
    if stored is not None and isinstance(stored.get("frames"), int):
        return int(stored["frames"])
    return v.get_frame_count()


# ---------------------------------------------------------------------------- the group


@click.group(cls=HdsGroup, context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES)
@click.option(
    "--store",
    metavar="URL",
    help="Where the data lives: s3://bucket/prefix, a folder, file:///path or memory://name "
    "[default: $HDS_STORE, else the embedded folder ~/.local/share/hds_s3].",
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Draw progress bars on stderr [default: when stderr is a terminal].",
)
@click.version_option(package_name="hds_s3", prog_name="hds")
@click.pass_context
def cli(ctx: click.Context, store: str | None, as_json: bool, debug: bool, progress: bool | None) -> None:
    """Hyper-Datasets without a server: datasets, versions and frames in S3 or a folder.

    A failure prints 'hds: error: ...' on stderr (a JSON object with --json) and exits with 1,
    2 for a usage error.
    """
    ctx.obj = Env(store=store or default_store_url(), as_json=as_json, debug=debug, progress=progress)


# ---------------------------------------------------------------------------- datasets


@cli.group(context_settings=CONTEXT_SETTINGS)
def datasets() -> None:
    """Create, list, show and delete datasets."""


def _named(option: str, given: str | None, positional: str | None, command: str) -> str:
    """The name given as ``option`` or (deprecated) as the positional argument of ``command``.

    Raises:
        click.UsageError: neither given, or both with different values.
    """
    if positional is not None:
        if given is not None and given != positional:
            raise click.UsageError(f"give the name once: {option} {given!r} or {positional!r}, not both")
        click.echo(f"hds: note: '{command} NAME' is deprecated; write '{command} {option} NAME'", err=True)
        return positional
    if given is None:
        raise click.UsageError(f"give the name: {command} {option} NAME")
    return given


@datasets.command("create")
@click.option(
    "--dataset", "-d", "dataset_name", metavar="NAME", help="The new dataset's name.", required=False
)
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--description", default="", help="A description.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="A tag (repeat for several).")
@click.option("--project", default=None, help="A project name, kept with the dataset.")
@click.option("--metadata", default=None, metavar="JSON|@FILE", help="Dataset metadata (a JSON object).")
@click.option(
    "--exist-ok/--fail-if-exists",
    default=True,
    help="Use the dataset if it exists (as Python's Dataset.create does), or fail [default: --exist-ok].",
)
@pass_env
def datasets_create(
    env: Env,
    dataset_name: str | None,
    name: str | None,
    description: str,
    tags: tuple[str, ...],
    project: str | None,
    metadata: str | None,
    exist_ok: bool,
) -> None:
    """Create a dataset with one empty draft version named Current (or use the existing one).

    When it exists, nothing is changed (its description, tags and metadata stay), unless
    --fail-if-exists makes that an error. NAME as an argument is the deprecated spelling of --dataset.
    """
    chosen = _named("--dataset", dataset_name, name, "hds datasets create")
    meta = _json_object(metadata, "--metadata") if metadata is not None else None
    existed = Dataset.exists(chosen, client=env.client)
    ds = Dataset.create(
        chosen,
        dataset_project=project,
        raise_if_exists=not exist_ok,
        tags=list(tags),
        description=description,
        metadata=meta,
        client=env.client,
    )
    head = _current(ds)
    current = f"current version {head.name!r}" if head is not None else "no version"
    text = (
        f"dataset {ds.name!r} ({ds.id}) exists already; nothing was changed; {current}"
        if existed
        else f"created dataset {ds.name!r} ({ds.id}); {current}"
    )
    emit(env, {**dataset_info(ds), "created": not existed}, text)


@datasets.command("list")
@click.option("--pattern", default=None, metavar="REGEX", help="Only names matching this regex.")
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", help="Only datasets with this tag; -TAG excludes."
)
@pass_env
def datasets_list(env: Env, pattern: str | None, tags: tuple[str, ...]) -> None:
    """List datasets."""
    found = Dataset.list_datasets(pattern, list(tags), client=env.client)
    rows = [(d.name, d.id, d.version_count, ",".join(d.tags), _when(d.last_update)) for d in found]
    emit(
        env,
        [dataset_info(d) for d in found],
        lambda: _table(rows, ["NAME", "ID", "VERSIONS", "TAGS", "UPDATED"]) if rows else "no datasets",
    )


@datasets.command("show")
@dataset_options
@pass_env
def datasets_show(env: Env, dataset_name: str | None, dataset_id: str | None) -> None:
    """Show a dataset and its versions."""
    ds = get_dataset(env, dataset_name, dataset_id)
    info = dataset_info(ds)
    versions = ds.get_versions()
    names = {v.id: v.name for v in versions}
    info["versions"] = [version_info(v, names) for v in versions]

    def text() -> str:
        current = info["current_version"]
        lines = [
            f"name:         {ds.name}",
            f"id:           {ds.id}",
            f"description:  {ds.description or '-'}",
            f"tags:         {', '.join(ds.tags) or '-'}",
            f"project:      {ds.project or '-'}",
            f"created:      {_when(ds.created)}",
            f"last update:  {_when(ds.last_update)}",
            f"structure:    {ds.paradigm}",
            f"current:      {current['name'] if current else '-'}",
            f"metadata:     {_dumps(info['metadata'], None)}",
            "",
            _table(
                [(v.name, v.id, v.status, names.get(v.parent_id or "")) for v in versions],
                ["VERSION", "ID", "STATUS", "PARENT"],
            ),
        ]
        return "\n".join(lines)

    emit(env, info, text)


@datasets.command("history")
@dataset_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Changes shown.")
@pass_env
def datasets_history(env: Env, dataset_name: str | None, dataset_id: str | None, limit: int) -> None:
    """Show who changed a dataset's tree, and how: its newest commits, newest first."""
    ds = get_dataset(env, dataset_name, dataset_id)
    changes = ds.get_history(limit)

    def text() -> str:
        if not changes:
            return f"no history kept for {ds.name!r}"
        rows = [(c["seq"], _when(c["time"]), c["user"] or None, c["what"]) for c in changes]
        return _table(rows, ["SEQ", "WHEN", "WHO", "WHAT"])

    emit(env, changes, text)


@datasets.command("schema")
@dataset_options
@click.option(
    "--version", "-v", "version_name", metavar="NAME", help="Only this version [default: every one]."
)
@click.option("--version-id", "version_id", metavar="ID", help="Only this version, by id.")
@pass_env
def datasets_schema(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
) -> None:
    """Print the type of every meta path the frames use (of every version, or of one).

    A path that holds several types in different frames shows them all (TYPES "string | integer")
    with how many frames hold each.
    """
    if version_name is None and version_id is None:
        schema = get_dataset(env, dataset_name, dataset_id).get_schema()
    else:
        schema = get_version(env, dataset_name, dataset_id, version_name, version_id).get_schema()

    def text() -> str:
        if not schema:
            return "no metadata in use"
        rows = [
            (path, " | ".join(info["types"]), ", ".join(f"{t} {n}" for t, n in info["frames"].items()))
            for path, info in schema.items()
        ]
        return _table(rows, ["FIELD", "TYPES", "FRAMES"])

    emit(env, schema, text)


@datasets.command("delete")
@dataset_options
@click.option("--all-versions", is_flag=True, help="Also delete draft versions that hold frames.")
@click.option("--force", is_flag=True, help="Also delete published versions.")
@click.option("--missing-ok", is_flag=True, help="Succeed, doing nothing, when there is no such dataset.")
@_yes_option
@pass_env
def datasets_delete(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    all_versions: bool,
    force: bool,
    missing_ok: bool,
    yes: bool,
) -> None:
    """Delete a dataset (without flags, only one whose versions are all empty drafts).

    Asks for confirmation at a terminal; elsewhere --yes is needed.
    """
    try:
        ds = get_dataset(env, dataset_name, dataset_id)
    except NotFoundError:
        if not missing_ok:
            raise
        emit(env, {"deleted": None}, f"no dataset {dataset_name or dataset_id!r}; nothing to delete")
        return
    count = ds.version_count
    confirm(yes, f"delete dataset {ds.name!r} ({ds.id}) and its {plural(count, 'version')}")
    Dataset.delete(dataset_id=ds.id, delete_all_versions=all_versions, force=force, client=env.client)
    emit(env, {"deleted": {"id": ds.id, "name": ds.name}}, f"deleted dataset {ds.name!r} ({ds.id})")


# ---------------------------------------------------------------------------- versions


@cli.group(context_settings=CONTEXT_SETTINGS)
def versions() -> None:
    """List, create, publish, snapshot, rename and delete versions; their tree, stats and metadata.

    A command given no --version uses the dataset's current version: the draft farthest from the
    root (the newest of them on ties); with no draft, the most recently published version.
    """


@versions.command("list")
@dataset_options
@click.option("--published", "only_published", is_flag=True, help="Only published versions.")
@click.option("--drafts", "only_draft", is_flag=True, help="Only drafts.")
@pass_env
def versions_list(
    env: Env, dataset_name: str | None, dataset_id: str | None, only_published: bool, only_draft: bool
) -> None:
    """List a dataset's versions, oldest first."""
    if only_published and only_draft:
        raise click.UsageError("--published and --drafts exclude each other")
    ds = get_dataset(env, dataset_name, dataset_id)
    every = ds.get_versions()
    names = {v.id: v.name for v in every}
    shown = [v for v in every if not (only_published and v.is_draft) and not (only_draft and not v.is_draft)]
    head = _current(ds)
    head_id = head.id if head is not None else None
    rows = [
        (
            v.name,
            v.id,
            v.status,
            names.get(v.parent_id or ""),
            _when(v.created),
            (v.published_by if v.is_published else v.created_by) or None,
            "*" if v.id == head_id else "",
        )
        for v in shown
    ]

    def text() -> str:
        header = ["NAME", "ID", "STATUS", "PARENT", "CREATED", "BY", "CURRENT"]
        table = _table(rows, header) if rows else "no versions"
        which = f"{head.name!r}" if head is not None else "none"
        return f"{table}\n\ncurrent: {which}; {CURRENT_RULE}"

    emit(env, [{**version_info(v, names), "current": v.id == head_id} for v in shown], text)


#: Levels of a tree drawing that are indented; deeper versions are drawn at this indentation with
#: their depth, so a drawing of a chain thousands of versions deep stays linear in its size.
TREE_INDENT_LEVELS = 24


def _tree_lines(nodes: Sequence[Mapping[str, Any]], ids: bool) -> Iterator[str]:
    """The lines of a tree drawing, from its nodes in depth-first order (no recursion: deep chains)."""
    by_id = {node["id"]: node for node in nodes}
    roots = [n["id"] for n in nodes if n["root"]]
    prefixes: dict[str | None, str] = {None: ""}  # the prefix of a node's children
    depths: dict[str | None, int] = {None: 0}
    for node in nodes:
        parent = node["parent"] if node["parent"] in by_id else None
        siblings = by_id[parent]["children"] if parent is not None else roots
        last = siblings[-1] == node["id"]
        depth = depths[node["id"]] = depths[parent] + 1
        prefix = prefixes[parent]
        deep = f"[depth {depth}] " if depth > TREE_INDENT_LEVELS else ""
        mark = "  <- current" if node["current"] else ""
        ident = f"  {node['id']}" if ids else ""
        count = node["frames"]
        yield (
            f"{prefix}{'└── ' if last else '├── '}{deep}{node['name']}  [{node['status']}]  "
            f"{count} frame{'' if count == 1 else 's'}{ident}{mark}"
        )
        if depth < TREE_INDENT_LEVELS:
            prefixes[node["id"]] = prefix + ("    " if last else "│   ")
        else:
            prefixes[node["id"]] = prefix


@versions.command("tree")
@dataset_options
@click.option("--ids", is_flag=True, help="Show version ids too.")
@pass_env
def versions_tree(env: Env, dataset_name: str | None, dataset_id: str | None, ids: bool) -> None:
    """Draw the version tree with each version's status and frame count.

    With --json: the versions in the drawing's order (depth first), each with its parent's id and
    its children's ids.
    """
    ds = get_dataset(env, dataset_name, dataset_id)
    every = ds.get_versions()  # one read of the tree; published versions carry their frame counts
    head = _current(ds)
    kids: dict[str | None, list[DatasetVersion]] = {}
    known = {v.id for v in every}
    for v in every:
        kids.setdefault(v.parent_id if v.parent_id in known else None, []).append(v)
    nodes: list[dict[str, Any]] = []
    stack = list(reversed(kids.get(None, [])))
    while stack:
        v = stack.pop()
        nodes.append(
            {
                "id": v.id,
                "name": v.name,
                "status": v.status,
                "frames": frame_count(v),
                "current": head is not None and v.id == head.id,
                "parent": v.parent_id,
                "root": v.parent_id not in known,
                "children": [c.id for c in kids.get(v.id, [])],
                "created_by": v.created_by or None,
                "published_by": v.published_by,
            }
        )
        stack.extend(reversed(kids.get(v.id, [])))

    def text() -> str:
        return "\n".join([f"{ds.name}" + (f"  {ds.id}" if ids else ""), *_tree_lines(nodes, ids)])

    emit(env, {"dataset": ds.name, "dataset_id": ds.id, "versions": nodes}, text)


@versions.command("create")
@dataset_options
@click.option("--version", "-v", "version_name", metavar="NAME", help="The new version's name.")
@click.argument("name", required=False, metavar="[NAME]")
@click.option(
    "--parent",
    default=None,
    metavar="NAME",
    help="The published parent version, by name.",
    shell_complete=complete_versions,
)
@click.option("--parent-id", default=None, metavar="ID", help="The published parent version, by id.")
@click.option("--comment", default=None, help="A comment.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="A tag (repeat for several).")
@click.option("--metadata", default=None, metavar="JSON|@FILE", help="Version metadata (a JSON object).")
@click.option(
    "--exist-ok/--fail-if-exists",
    default=True,
    help="Use the version if it exists (as Python's create_version does), or fail [default: --exist-ok].",
)
@pass_env
def versions_create(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    name: str | None,
    parent: str | None,
    parent_id: str | None,
    comment: str | None,
    tags: tuple[str, ...],
    metadata: str | None,
    exist_ok: bool,
) -> None:
    """Create a draft version: a child of a published parent (inheriting its frames), or a root.

    When it exists, nothing is changed unless --fail-if-exists makes that an error. If the new
    draft becomes the current version (the draft farthest from the root, newest on ties), the
    command says so: commands without --version then use it. NAME as an argument is the deprecated
    spelling of --version.
    """
    chosen = _named("--version", version_name, name, "hds versions create")
    if parent is not None and parent_id is not None:
        raise click.UsageError("give --parent NAME or --parent-id ID, not both")
    meta = _json_object(metadata, "--metadata") if metadata is not None else None
    ds = get_dataset(env, dataset_name, dataset_id)
    before = _current(ds)
    existed = any(v.name == chosen for v in ds.get_versions())
    v = DatasetVersion.create_version(
        dataset_id=ds.id,
        version_name=chosen,
        parent_version_names=parent,
        parent_version_ids=parent_id,
        raise_if_exists=not exist_ok,
        comment=comment,
        metadata=meta,
        tags=list(tags),
        client=env.client,
    )
    after = _current(ds.reload())
    moved = after is not None and (before is None or before.id != after.id)
    below = f" (child of {parent or parent_id})" if parent or parent_id else " (a root)"
    head = f"; current version {after.name!r}" if after is not None else ""
    what = "exists already; nothing was changed" if existed else f"created{below}"
    if moved and after is not None:
        was = f" (was {before.name!r})" if before is not None else ""
        note(
            env,
            f"the current version of {ds.name!r} is now {after.name!r}{was}: commands without --version "
            f"use it; {CURRENT_RULE}",
        )
    emit(
        env,
        {
            **version_info(v),
            "created": not existed,
            "current": None if after is None else {"id": after.id, "name": after.name, "moved": moved},
        },
        f"version {v.name!r} ({v.id}) [{v.status}] in {ds.name!r} {what}{head}",
    )


@versions.command("publish")
@dataset_options
@version_options
@pass_env
def versions_publish(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
) -> None:
    """Publish a draft: it becomes read-only and may have children."""
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, writes="publishing")
    v.publish_version()
    emit(env, version_info(v), f"published {v.name!r} ({v.id}) of {v.dataset_name!r}")


@versions.command("snapshot")
@dataset_options
@click.option(
    "--publish-name", default=None, metavar="NAME", help="Name of the snapshot [default: snapshot <time>]."
)
@click.option("--child-name", default=None, metavar="NAME", help="Name of the new draft [default: Current].")
@click.option("--publish-comment", default=None, help="Comment of the snapshot.")
@click.option("--child-comment", default=None, help="Comment of the new draft.")
@pass_env
def versions_snapshot(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    publish_name: str | None,
    child_name: str | None,
    publish_comment: str | None,
    child_comment: str | None,
) -> None:
    """Publish the only draft under a new name and continue in a new draft child of it."""
    ds = get_dataset(env, dataset_name, dataset_id)
    child = DatasetVersion.create_snapshot(
        dataset_id=ds.id,
        publish_name=publish_name,
        child_name=child_name,
        publish_comment=publish_comment,
        child_comment=child_comment,
        client=env.client,
    )
    parent = child.get_parent()
    assert parent is not None
    emit(
        env,
        {"snapshot": version_info(parent), "current": version_info(child)},
        f"published {parent.name!r} ({parent.id}); new draft {child.name!r} ({child.id})",
    )


@versions.command("rename")
@dataset_options
@version_options
@click.argument("new_name")
@pass_env
def versions_rename(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    new_name: str,
) -> None:
    """Rename a version (drafts and published versions alike) to NEW_NAME."""
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, required=True)
    old = v.name
    v.set_version_name(new_name)
    emit(env, version_info(v), f"renamed {old!r} to {v.name!r} ({v.id})")


@versions.command("delete")
@dataset_options
@version_options
@click.option("--force", is_flag=True, help="Also a published version, with its whole subtree.")
@_yes_option
@pass_env
def versions_delete(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    force: bool,
    yes: bool,
) -> None:
    """Delete a draft version (a published one, and its subtree, only with --force).

    Asks for confirmation at a terminal; elsewhere --yes is needed.
    """
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, required=True)
    below = len(v.get_children())
    subtree = f" and its {plural(below, 'child version')}" if below and force else ""
    confirm(yes, f"delete version {v.name!r} ({v.id}) of {v.dataset_name!r}{subtree}")
    v.dataset.delete_version(version_id=v.id, force=force)
    emit(env, {"deleted": version_info(v)}, f"deleted version {v.name!r} ({v.id}) of {v.dataset_name!r}")


@versions.command("stats")
@dataset_options
@version_options
@pass_env
def versions_stats(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
) -> None:
    """Show a version's statistics (stored at publish time; computed now for a draft)."""
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    stats = v.get_stats()

    def text() -> str:
        lines = [f"{v.dataset_name} / {v.name} [{v.status}]"]
        for key in ("frames", "annotated", "unannotated", "rois"):
            if key in stats:
                lines.append(f"{key + ':':13} {stats[key]}")
        for key, title in (("labels", "LABEL"), ("content_types", "CONTENT TYPE")):
            rows = [(e.get("name"), e.get("count")) for e in stats.get(key) or []]
            if rows:
                lines += ["", _table(rows, [title, "COUNT"])]
        return "\n".join(lines)

    emit(env, stats, text)


@versions.group("metadata", context_settings=CONTEXT_SETTINGS)
def versions_metadata() -> None:
    """Read or replace a version's metadata."""


@versions_metadata.command("get")
@dataset_options
@version_options
@pass_env
def metadata_get(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
) -> None:
    """Print a version's metadata as JSON."""
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    emit(env, v.get_metadata())


@versions_metadata.command("set")
@dataset_options
@version_options
@click.argument("metadata", metavar="JSON|@FILE")
@click.option("--merge", is_flag=True, help="Update the given top-level keys and keep the others.")
@pass_env
def metadata_set(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    metadata: str,
    merge: bool,
) -> None:
    """Replace a draft's metadata with a JSON object (inline, or @FILE to read it from a file)."""
    new = _json_object(metadata, "METADATA")
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, writes="setting the metadata of")
    if merge:  # merged inside the commit: a concurrent change of other keys is kept
        new = v.update_metadata(new)
    else:
        v.set_metadata(new)
    emit(env, new, f"metadata of {v.name!r} ({v.id}) set: {plural(len(new), 'key')}")


# ---------------------------------------------------------------------------- frames: input


@dataclass(frozen=True)
class BadRecord:
    """An input record that is not a valid frame: where it is (and its place in the file) and why."""

    where: str
    reason: str
    order: int = 0


def _format_of(path: str, given: str | None) -> str:
    if given is not None:
        return given
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise click.UsageError(
            f"cannot tell the format of {path!r} from its extension; give --format jsonl|parquet"
        )
    return fmt


def _unjson(value: Any) -> Any:
    """A meta column's JSON text as a value (None: ``{}``).

    Raises:
        ValidationError: the text is not JSON hds_s3 can read, or longer than a line may be.
    """
    if not isinstance(value, str):
        return {} if value is None else value
    if len(value) > MAX_LINE_BYTES:
        raise ValidationError(
            f"a text of {len(value):,} characters; a frame is at most {MAX_FRAME_BYTES:,} bytes"
        )
    return parse_json(value)


def _from_parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row (our export's columns, metadata as JSON text) as a frame dict."""
    for key in ("meta", "meta_blob"):
        if key in row:
            row[key] = _unjson(row[key])
    for key in ("sources", "rois"):
        for item in row.get(key) or ():
            if isinstance(item, dict) and "meta" in item:
                item["meta"] = _unjson(item["meta"])
    for key in _DERIVED:
        row.pop(key, None)
    return row


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    """Drop what a frame does not carry into a version: provenance, and a DataView's additions."""
    for key in (*_PROVENANCE, "dataset"):
        record.pop(key, None)
    rois = record.get("rois")
    if isinstance(rois, list):
        for roi in rois:
            if isinstance(roi, dict):
                roi.pop("label_num", None)
    return record


def _records(path: str, fmt: str) -> Iterator[tuple[str, dict[str, Any] | BadRecord]]:
    """Yield ``(where, frame dict or BadRecord)`` for every record of a JSONL or Parquet file.

    Raises:
        ValidationError: the Parquet file cannot be read at all.
        OSError: the file cannot be read.
    """
    name = Path(path).name
    if fmt == "jsonl":
        with open(path, "rb") as handle:  # read as bytes: a line that is not UTF-8 is one bad record
            lineno = 0
            while True:
                raw = handle.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                lineno += 1
                where = f"{name} line {lineno}"
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the line, unread
                        raw = handle.readline(MAX_LINE_BYTES)
                    reason = (
                        f"longer than {MAX_LINE_BYTES:,} bytes, so not read; a frame is at most "
                        f"{MAX_FRAME_BYTES:,} bytes (4 MiB) of JSON"
                    )
                    yield where, BadRecord(where, reason)
                    continue
                if not raw.strip():
                    continue
                try:
                    data = parse_json(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield where, BadRecord(where, f"not UTF-8 (byte {exc.start + 1}: {exc.reason})")
                    continue
                except ValidationError as exc:
                    yield where, BadRecord(where, str(exc))
                    continue
                if not isinstance(data, dict):
                    yield where, BadRecord(where, f"a frame is a JSON object, got {type(data).__name__}")
                    continue
                yield where, _strip(data)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            reader = pq.ParquetFile(path)
            rowno = 0
            for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                for row in batch.to_pylist():
                    rowno += 1
                    where = f"{name} row {rowno}"
                    try:
                        yield where, _strip(_from_parquet_row(row))
                    except ValidationError as exc:
                        yield where, BadRecord(where, f"a meta column is not JSON text ({exc})")
        except (pa.ArrowException, ValueError) as exc:
            raise ValidationError(f"{name}: not a readable Parquet file ({_one_line(str(exc))})") from None


def _invalid(batch: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Check a batch of frame dicts exactly as ``add_frames`` will: ``(index, reason)`` of the bad ones."""
    from hds_s3.index import columnar, ingest
    from hds_s3.model.frames import guess_content_type, hash_id

    _, _, slow = columnar.fast_frames_table(
        batch, version_id="0" * 32, now=0, hash_id=hash_id, guess_type=guess_content_type
    )
    bad: list[tuple[int, str]] = []
    for i in slow:
        try:
            ingest.normalize(batch[i])
        except (HdsError, TypeError, ValueError) as exc:
            bad.append((i, _one_line(str(exc))))
    return bad


@dataclass
class CheckResult:
    """What :func:`check_file` found: good records, and the bad ones in file order."""

    good: int = 0
    bad_count: int = 0
    bad: list[BadRecord] = field(default_factory=list)


def count_records(path: str, fmt: str) -> int | None:
    """The number of records of a frames file, for a progress bar's total (None when it cannot tell).

    JSON Lines: the non-blank lines (one quick pass over the bytes); Parquet: the row count in its footer.
    """
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except (OSError, ValueError):
        return None
    except Exception:  # pyarrow's errors: the check that follows reports the file properly
        return None


def check_file(path: str, fmt: str, bar: Any = None, *, keep: int | None = None) -> CheckResult:
    """Read a frames file once and check every frame as ``add_frames`` would (bounded memory).

    ``keep`` bounds how many bad records are kept (all when None); all are counted.

    Raises:
        ValidationError: the file is not readable as ``fmt`` at all.
        OSError: the file cannot be read.
    """
    result = CheckResult()
    batch: list[dict[str, Any]] = []
    places: list[str] = []
    orders: list[int] = []
    pending: list[BadRecord] = []  # unparsable records met since the last flush

    def note(found: Iterable[BadRecord]) -> None:
        for record in found:
            result.bad_count += 1
            if keep is None or len(result.bad) < keep:
                result.bad.append(record)

    def flush() -> None:
        failures = _invalid(batch) if batch else []
        found = [*pending, *(BadRecord(places[i], reason, orders[i]) for i, reason in failures)]
        note(sorted(found, key=lambda r: r.order))
        result.good += len(batch) - len(failures)
        batch.clear()
        places.clear()
        orders.clear()
        pending.clear()

    for order, (where, record) in enumerate(_records(path, fmt)):
        if bar is not None:
            bar.update(1)
        if isinstance(record, BadRecord):
            pending.append(BadRecord(record.where, record.reason, order))
            if len(batch) + len(pending) >= BATCH_ROWS:
                flush()
            continue
        batch.append(record)
        places.append(where)
        orders.append(order)
        if len(batch) + len(pending) >= BATCH_ROWS:
            flush()
    flush()
    return result


# ---------------------------------------------------------------------------- frames: output


@contextmanager
def _output(path: str, binary: bool) -> Iterator[IO[Any]]:
    """Open ``path`` for writing through a temporary file renamed into place on success; ``-`` is stdout.

    Raises:
        click.UsageError: Parquet to stdout.
        OSError: the folder cannot be written.
    """
    if path == "-":
        if binary:
            raise click.UsageError("Parquet cannot be written to stdout; give a file name")
        yield sys.stdout
        return
    from hds_s3.tools.outfiles import replacing

    with replacing(path, binary=binary) as handle:  # created with the user's umask
        yield handle


def write_frames(dicts: Iterable[Mapping[str, Any]], path: str, fmt: str, bar: Any = None) -> int:
    """Write frame dicts as JSON Lines or Parquet (frame columns, metadata as JSON text); return the count.

    Raises:
        OSError: the file cannot be written (nothing is left at ``path``).
    """
    count = 0
    if fmt == "jsonl":
        with _output(path, binary=False) as handle:
            for frame in dicts:
                handle.write(_dumps(frame, None) + "\n")
                count += 1
                if bar is not None:
                    bar.update(1)
        return count
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hds_s3.index import segments

    schema = pa.schema([segments.FRAME_SCHEMA.field(c) for c in segments.FRAME_COLUMNS])
    with _output(path, binary=True) as handle:
        writer = pq.ParquetWriter(handle, schema, compression="zstd")
        rows: list[dict[str, Any]] = []
        try:
            for frame in dicts:
                rows.append(segments.frame_row(frame))
                count += 1
                if bar is not None:
                    bar.update(1)
                if len(rows) >= BATCH_ROWS:
                    writer.write_table(
                        pa.Table.from_pylist(rows, schema=segments.FRAME_SCHEMA).select(schema.names)
                    )
                    rows = []
            if rows:
                writer.write_table(
                    pa.Table.from_pylist(rows, schema=segments.FRAME_SCHEMA).select(schema.names)
                )
        finally:
            writer.close()
    return count


# ---------------------------------------------------------------------------- frames


@cli.group(context_settings=CONTEXT_SETTINGS)
def frames() -> None:
    """Add, get, delete, count and export the frames of a version."""


_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "parquet"]),
    default=None,
    help="File format [default: from the extension: .jsonl/.ndjson or .parquet/.pq].",
)


@frames.command("add")
@dataset_options
@version_options
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_format_option
@click.option("--skip-invalid", is_flag=True, help="Add the valid frames and list the invalid ones.")
@pass_env
def frames_add(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    path: str,
    fmt: str | None,
    skip_invalid: bool,
) -> None:
    """Add the frames of PATH (JSON Lines or Parquet of frame dicts) to a draft.

    Every frame is checked before anything is written; any bad line stops the command (nothing is
    added) unless --skip-invalid. A frame whose id exists is replaced.

    The format: one frame dict per line, as 'hds frames export' writes it; 'hds frames schema'
    prints its JSON Schema ('hds frames schema --arrow' the Parquet columns). A frame has sources
    (each with an id and a uri), rois, meta and an optional id. A frame of one source may give the
    source's fields (uri, content_type, width, height, timestamp, preview, masks) at the top level
    instead: its source id is then "default". A key that is no field is refused, naming it ('meta'
    may also be spelled 'metadata', a ROI's 'labels' 'label'). A line is at most 8 MiB, a frame 4 MiB
    of JSON. Two frames (each is one line in the file):

    \b
    {"uri": "s3://bucket/street/0001.jpg", "width": 1920, "height": 1080,
     "meta": {"city": "bremen"}, "rois": [{"labels": ["night"], "type": "label"}]}

    \b
    {"id": "rig-0001",
     "sources": [{"id": "front", "uri": "s3://bucket/front/0001.jpg"},
                 {"id": "rear", "uri": "s3://bucket/rear/0001.jpg"}],
     "rois": [{"labels": ["car"], "type": "box2d", "sources": ["front"],
               "poly": [10, 20, 210, 20, 210, 140, 10, 140]}]}

    The box is stored as its 4 corners x,y, x+w,y, x+w,y+h, x,y+h.
    """  # noqa: D301 - "\b" keeps click from rewrapping the examples
    fmt = _format_of(path, fmt)
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, writes="adding frames to")
    _require_draft(v, "add frames to")
    total = count_records(path, fmt) if env.show_progress else None
    with _progress(env, f"checking {Path(path).name}", total=total) as checking:
        checked = check_file(path, fmt, checking, keep=None if skip_invalid else 1)
    good, bad = checked.good, checked.bad
    if checked.bad_count and not skip_invalid:
        more = checked.bad_count - 1
        others = f" (and {plural(more, 'more invalid record')})" if more else ""
        raise CommandError(
            f"{bad[0].where}: {bad[0].reason}{others}; nothing was added to dataset "
            f"{v.dataset_name!r}, version {v.name!r}: fix the input, or add the valid frames with "
            "--skip-invalid",
            kind="ValidationError",
        )
    if checked.bad_count and not good:
        for record in bad:
            note(env, f"skipped {record.where}: {record.reason}")
        raise CommandError(
            f"every record of {Path(path).name} is invalid ({plural(checked.bad_count, 'record')}, "
            "listed above); nothing was added",
            kind="ValidationError",
            hint="fix the input; hds frames add --help describes the frame format",
        )
    skip = {b.where for b in bad}

    def valid(bar: Any) -> Iterator[dict[str, Any]]:
        for where, record in _records(path, fmt):
            if where not in skip and not isinstance(record, BadRecord):
                bar.update(1)
                yield record

    with _progress(env, f"adding to {v.dataset_name}/{v.name}", total=good) as adding:
        failed = v.add_frames(valid(adding))
    if failed:  # cannot happen after the check; never silent if it does
        raise CommandError(
            f"{plural(len(failed), 'frame was', 'frames were')} refused ({failed[0].reason}); "
            f"the other {good - len(failed)} were added",
            kind="ValidationError",
        )
    for record in bad:
        note(env, f"skipped {record.where}: {record.reason}")
    now = v.get_frame_count()
    summary = {
        "dataset": v.dataset_name,
        "version": v.name,
        "version_id": v.id,
        "version_from": _version_from(version_name, version_id),
        "added": good,
        "frames": now,
        "skipped": [{"where": b.where, "reason": b.reason} for b in bad],
    }
    skipped = f", skipped {len(bad)} invalid" if bad else ""
    emit(
        env,
        summary,
        f"added {plural(good, 'frame')} to {v.dataset_name!r} / {v.name!r}{skipped}; "
        f"it now has {plural(now, 'frame')}",
    )


@frames.command("schema")
@click.option(
    "--arrow", is_flag=True, help="Print the schema of a row of the Arrow frame table (the Parquet columns)."
)
def frames_schema(arrow: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of a frame dict, the format of 'hds frames add'.

    With --arrow, the schema of one row of the Arrow frame table (what 'hds frames export' writes as
    Parquet), with each column's Arrow type under x-arrow-type.
    """
    from hds_s3.model.schema import frame_row_schema, frame_schema

    click.echo(_dumps(frame_row_schema() if arrow else frame_schema()))


@frames.command("get")
@dataset_options
@version_options
@click.argument("frame_ids", nargs=-1, required=True, metavar="FRAME_ID...")
@pass_env
def frames_get(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    frame_ids: tuple[str, ...],
) -> None:
    """Print frames as JSON (one object per frame; a list with --json)."""
    from hds_s3.model.frames import to_frame_dict

    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    found = [to_frame_dict(v.get_single_frame(frame_id=fid)) for fid in frame_ids]
    if env.as_json:
        click.echo(_dumps(found))
    else:
        for frame in found:
            click.echo(_dumps(frame))


@frames.command("delete")
@dataset_options
@version_options
@click.argument("frame_ids", nargs=-1, metavar="[FRAME_ID]...")
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Also delete the ids listed in this file, one per line.",
)
@pass_env
def frames_delete(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    frame_ids: tuple[str, ...],
    ids_file: str | None,
) -> None:
    """Delete frames by id from a draft (ids not in the version are ignored and counted)."""
    ids = list(frame_ids)
    if ids_file is not None:
        with open(ids_file, encoding="utf-8") as handle:
            ids += [line.strip() for line in handle if line.strip()]
    if not ids:
        raise click.UsageError("give frame ids as arguments or with --ids-file")
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, writes="deleting frames from")
    _require_draft(v, "delete frames from")
    unique = sorted(set(ids))
    found = len(v.frames_present(unique))
    v.delete_frames(unique)
    emit(
        env,
        {
            "dataset": v.dataset_name,
            "version": v.name,
            "version_from": _version_from(version_name, version_id),
            "deleted": found,
            "absent": len(unique) - found,
        },
        f"deleted {plural(found, 'frame')} from {v.dataset_name!r} / {v.name!r}"
        + (
            f" ({plural(len(unique) - found, 'id was', 'ids were')} not in it)" if len(unique) > found else ""
        ),
    )


@frames.command("count")
@dataset_options
@version_options
@pass_env
def frames_count(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
) -> None:
    """Print the number of frames of a version."""
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    n = v.get_frame_count()
    emit(env, {"dataset": v.dataset_name, "version": v.name, "frames": n}, str(n))


@frames.command("export")
@dataset_options
@version_options
@click.argument("output", metavar="OUTPUT")
@_format_option
@pass_env
def frames_export(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    output: str,
    fmt: str | None,
) -> None:
    """Write a version's frames to OUTPUT (JSON Lines, '-' for stdout, or Parquet).

    Parquet holds the frame columns with metadata as JSON text, written batch by batch straight from
    the version's Arrow table; JSON Lines holds one canonical frame dict a line.
    """
    import pyarrow.parquet as pq

    from hds_s3.index import segments
    from hds_s3.tools.coco import version_frames

    fmt = "jsonl" if output == "-" and fmt is None else _format_of(output, fmt)
    if fmt == "parquet" and output == "-":
        raise click.UsageError("Parquet cannot be written to stdout; give a file name")
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    table = v.get_frames_table(columns=list(segments.FRAME_COLUMNS)) if fmt == "parquet" else None
    total = table.num_rows if table is not None else frame_count(v) if env.show_progress else None
    with _progress(env, f"exporting {v.dataset_name}/{v.name}", total=total) as bar:
        if table is None:
            n = write_frames(version_frames(v, BATCH_ROWS), output, fmt, bar)
        else:
            with _output(output, binary=True) as handle:
                with pq.ParquetWriter(handle, table.schema, compression="zstd") as writer:
                    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                        writer.write_batch(batch)
                        bar.update(batch.num_rows)
            n = table.num_rows
    if output != "-":
        emit(
            env,
            {"dataset": v.dataset_name, "version": v.name, "frames": n, "output": output},
            f"wrote {plural(n, 'frame')} to {output}",
        )


# ---------------------------------------------------------------------------- DataViews


def _spread(values: tuple[Any, ...], n: int, flag: str) -> list[Any]:
    """A per-rule list from a repeated flag: given 0 times (None), once (every rule) or once per rule."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise click.UsageError(
            f"{flag} is given {len(values)} times for {n} rules; "
            "give it once (for every rule) or once per --dataset"
        )
    return list(values)


_VIEW_KEYS = (
    "dataset_name",
    "dataset_id",
    "version_name",
    "version_id",
    "roi_query",
    "frame_query",
    "source_query",
    "weight",
    "filter_by_roi",
)
_VIEW_FILE_KEYS = ("queries", "iteration_order", "random_seed", "maximum_number_of_frames", "clip_length")


def view_rules(
    datasets: tuple[str, ...],
    dataset_ids: tuple[str, ...],
    versions: tuple[str, ...],
    version_ids: tuple[str, ...],
    roi_queries: tuple[str, ...],
    frame_queries: tuple[str, ...],
    source_queries: tuple[str, ...],
    weights: tuple[float, ...],
) -> list[dict[str, Any]]:
    """The DataView rules the query flags describe (see ``hds query --help``).

    Raises:
        click.UsageError: flags that do not line up with the rules.
    """
    if datasets and dataset_ids:
        raise click.UsageError("give the rules' datasets with --dataset or with --dataset-id, not both")
    if versions and version_ids:
        raise click.UsageError("give the rules' versions with --version or with --version-id, not both")
    by_id = bool(dataset_ids)
    names = list(dataset_ids or datasets)
    n = len(names)
    if n == 0:
        if versions or version_ids or roi_queries or frame_queries or source_queries or weights:
            raise click.UsageError("a rule starts with --dataset NAME (or --dataset-id ID)")
        return []
    columns = {
        "version_id" if version_ids else "version_name": _spread(version_ids or versions, n, "--version"),
        "roi_query": _spread(roi_queries, n, "--roi-query"),
        "frame_query": _spread(frame_queries, n, "--frame-query"),
        "source_query": _spread(source_queries, n, "--source-query"),
        "weight": _spread(weights, n, "--weight"),
    }
    rules = []
    for i, name in enumerate(names):
        rule: dict[str, Any] = {"dataset_id" if by_id else "dataset_name": name}
        for key, values in columns.items():
            if values[i] is not None and values[i] != "":
                rule[key] = values[i]
        rules.append(rule)
    return rules


def load_view_file(path: str) -> dict[str, Any]:
    """Read a DataView description: ``{"queries": [rule, ...], "iteration_order"?, "random_seed"?}``.

    A bare list is taken as the list of rules; each rule has ``add_query``'s keywords.

    Raises:
        click.BadParameter: not readable, not JSON, or not that shape.
    """
    try:
        data = parse_json(Path(path).read_bytes())
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path!r}: {exc.strerror or exc}", param_hint="--view"
        ) from None
    except ValidationError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--view") from None
    if isinstance(data, list):
        data = {"queries": data}
    if not isinstance(data, dict):
        raise click.BadParameter(
            f"{path}: a DataView is a JSON object or a list of rules", param_hint="--view"
        )
    unknown_keys = sorted(set(data) - set(_VIEW_FILE_KEYS))
    if unknown_keys:
        raise click.BadParameter(
            f"{path}: unknown keys {unknown_keys}; known: {', '.join(_VIEW_FILE_KEYS)}", param_hint="--view"
        )
    queries = data.get("queries")
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        raise click.BadParameter(f"{path}: 'queries' must be a list of rule objects", param_hint="--view")
    for i, rule in enumerate(queries):
        unknown = sorted(set(rule) - set(_VIEW_KEYS))
        if unknown:
            raise click.BadParameter(
                f"{path}: queries[{i}] has unknown keys {unknown}; known: {', '.join(_VIEW_KEYS)}",
                param_hint="--view",
            )
    return data


def view_options(func: F) -> F:
    """Add the DataView flags (rules, order, seed, view file)."""
    options = [
        click.option(
            "--view",
            "view_file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="A JSON file describing the DataView (its rules are added to the flags' rules).",
        ),
        click.option(
            "--dataset",
            "-d",
            "q_datasets",
            multiple=True,
            metavar="NAME",
            help="Start a rule on this dataset (repeat for several OR-ed rules).",
            shell_complete=complete_datasets,
        ),
        click.option(
            "--dataset-id",
            "q_dataset_ids",
            multiple=True,
            metavar="ID",
            help="Start a rule on this dataset id.",
        ),
        click.option(
            "--version",
            "-v",
            "q_versions",
            multiple=True,
            metavar="NAME",
            help="The rule's version; once for all rules, or once per rule ('' = current).",
            shell_complete=complete_versions,
        ),
        click.option(
            "--version-id", "q_version_ids", multiple=True, metavar="ID", help="The rule's version id."
        ),
        click.option(
            "--roi-query",
            "q_roi",
            multiple=True,
            metavar="QUERY",
            help="The rule's ROI query (labels or Lucene), once or once per rule ('' = none).",
        ),
        click.option(
            "--frame-query",
            "q_frame",
            multiple=True,
            metavar="QUERY",
            help="The rule's frame query (Lucene), once or once per rule ('' = none).",
        ),
        click.option(
            "--source-query",
            "q_source",
            multiple=True,
            metavar="QUERY",
            help="The rule's source query (Lucene), once or once per rule ('' = none).",
        ),
        click.option(
            "--weight", "q_weights", multiple=True, type=float, help="The rule's weight (random order)."
        ),
        click.option(
            "--order",
            type=click.Choice(["sequential", "random"]),
            default=None,
            help="Iteration order [default: sequential].",
        ),
        click.option("--seed", type=int, default=None, help="Random seed for --order random."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass
class ViewSpec:
    """The DataView a query command's flags describe."""

    rules: list[dict[str, Any]]
    order: str | None = None
    seed: int | None = None
    limit: int | None = None
    clip_length: int | None = None


def view_spec(params: Mapping[str, Any]) -> ViewSpec:
    """Collect the rules and options of :func:`view_options` from a command's parameters.

    Raises:
        click.UsageError: no rule at all, or flags that do not line up.
    """
    rules = view_rules(
        params["q_datasets"],
        params["q_dataset_ids"],
        params["q_versions"],
        params["q_version_ids"],
        params["q_roi"],
        params["q_frame"],
        params["q_source"],
        params["q_weights"],
    )
    spec = ViewSpec(rules=rules, order=params["order"], seed=params["seed"])
    if params["view_file"] is not None:
        data = load_view_file(params["view_file"])
        spec.rules = [*data["queries"], *rules]
        spec.order = spec.order or data.get("iteration_order")
        spec.seed = spec.seed if spec.seed is not None else data.get("random_seed")
        spec.limit = data.get("maximum_number_of_frames")
        spec.clip_length = data.get("clip_length")
    if not spec.rules:
        raise click.UsageError(
            "a query needs at least one rule: --dataset NAME [--roi-query ...], or --view FILE"
        )
    return spec


def build_dataview(env: Env, spec: ViewSpec) -> DataView:
    """Make the DataView of ``spec`` on the ``--store`` client (one finite pass, never infinite).

    Raises:
        ValidationError: a rule the DataView refuses (e.g. a malformed query, pointing at the token).
        NotFoundError: a rule names a dataset or version that does not exist.
    """
    from hds_s3.query.dataview import DataView

    view = DataView(
        iteration_order=spec.order or "sequential",
        iteration_infinite=False,
        iteration_random_seed=spec.seed,
        iteration_limit=spec.limit,
        clip_length=spec.clip_length,
        client=env.client,
    )
    for rule in spec.rules:
        view.add_query(**rule)
    return view


def _projection(value: str | None) -> list[str] | None:
    if value is None:
        return None
    fields = [f.strip() for f in value.split(",") if f.strip()]
    if not fields:
        raise click.BadParameter(
            "give field names separated by commas, e.g. id,sources", param_hint="--projection"
        )
    return fields


_projection_option = click.option(
    "--projection",
    default=None,
    metavar="FIELDS",
    help="Only these fields, comma-separated (e.g. id,sources.uri).",
)


def _limited(items: Iterable[Any], limit: int | None) -> Iterator[Any]:
    for i, item in enumerate(items):
        if limit is not None and i >= limit:
            return
        yield item


@cli.group(context_settings=CONTEXT_SETTINGS)
def query() -> None:
    """Count, show and export the frames a DataView selects.

    A DataView is a set of OR-ed rules; each --dataset starts one. --version, --roi-query,
    --frame-query, --source-query and --weight are given once (for every rule) or once per rule, in
    the order of the --dataset flags ('' for none). --view FILE reads rules from a JSON file:
    {"queries": [{"dataset_name": ..., "version_name": ..., "roi_query": ..., "frame_query": ...}],
    "iteration_order": "sequential"}.
    """


@query.command("count")
@view_options
@pass_env
def query_count(env: Env, /, **params: Any) -> None:
    """Print the number of frames the DataView selects."""
    view = build_dataview(env, view_spec(params))
    n = int(view.get_count())
    emit(env, {"frames": n}, str(n))


@query.command("head")
@view_options
@click.option(
    "-n", "--limit", default=10, show_default=True, type=click.IntRange(min=0), help="How many frames."
)
@_projection_option
@pass_env
def query_head(env: Env, /, limit: int, projection: str | None, **params: Any) -> None:
    """Print the first frames the DataView selects, one JSON object a line (a list with --json)."""
    view = build_dataview(env, view_spec(params))
    found = list(_limited(view.get_iterator(projection=_projection(projection), as_dict=True), limit))
    if env.as_json:
        click.echo(_dumps(found))
    else:
        for frame in found:
            click.echo(_dumps(frame, None))


@query.command("export")
@view_options
@click.argument("output", metavar="OUTPUT")
@_format_option
@click.option("--limit", default=None, type=click.IntRange(min=0), help="At most this many frames.")
@_projection_option
@pass_env
def query_export(
    env: Env, /, output: str, fmt: str | None, limit: int | None, projection: str | None, **params: Any
) -> None:
    """Write the frames the DataView selects to OUTPUT (JSON Lines, '-' for stdout, or Parquet).

    Parquet holds whole frames (the columns of 'hds frames export'); --projection is for JSON Lines.
    """
    fmt = "jsonl" if output == "-" and fmt is None else _format_of(output, fmt)
    fields = _projection(projection)
    if fields is not None and fmt == "parquet":
        raise click.UsageError("--projection writes partial frames: use JSON Lines for it")
    view = build_dataview(env, view_spec(params))
    total = None
    if env.show_progress:
        total = int(view.get_count())
        total = total if limit is None else min(total, limit)
    with _progress(env, "exporting", total=total) as bar:
        n = write_frames(
            _limited(view.get_iterator(projection=fields, as_dict=True), limit), output, fmt, bar
        )
    if output != "-":
        emit(env, {"frames": n, "output": output}, f"wrote {plural(n, 'frame')} to {output}")


# ---------------------------------------------------------------------------- COCO


@cli.group(context_settings=CONTEXT_SETTINGS)
def coco() -> None:
    """Import COCO instances files into a draft; export a version or a DataView as COCO."""


@coco.command("import")
@dataset_options
@version_options
@click.argument("path", metavar="COCO_JSON")
@click.option(
    "--image-root",
    required=True,
    metavar="URI",
    help="Folder or URL prefix of the images: each source URI is this joined with the image's file_name.",
)
@click.option("--create", is_flag=True, help="Create the dataset (by --dataset NAME) if it does not exist.")
@pass_env
def coco_import(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    path: str,
    image_root: str,
    create: bool,
) -> None:
    """Import COCO_JSON (a path or URL) into a draft version: images become frames, annotations ROIs.

    The whole file is checked first; nothing is written if anything in it is wrong.
    """
    from hds_s3.tools.coco import import_coco

    if create:
        if dataset_name is None:
            raise click.UsageError("--create needs --dataset NAME")
        Dataset.create(dataset_name, client=env.client)
    v = get_version(env, dataset_name, dataset_id, version_name, version_id, writes="importing into")
    _require_draft(v, "import into")
    result = import_coco(v, path, image_root, show_progress=env.show_progress)
    emit(
        env,
        {
            "dataset": v.dataset_name,
            "version": v.name,
            "version_id": v.id,
            "version_from": _version_from(version_name, version_id),
            **vars(result),
        },
        f"imported {plural(result.images, 'image')}, {plural(result.annotations, 'annotation')}, "
        f"{plural(result.categories, 'category', 'categories')} into {v.dataset_name!r} / {v.name!r}",
    )


@coco.command("export")
@view_options
@click.argument("output", metavar="OUTPUT")
@click.option(
    "--image-root", default=None, metavar="URI", help="Removed from source URIs to make file names."
)
@pass_env
def coco_export(env: Env, /, output: str, image_root: str | None, **params: Any) -> None:
    """Write a version (--dataset [--version]) or a DataView's frames (query flags) as COCO JSON.

    With one --dataset and no query, the version is exported and the categories its import stored
    keep their ids; with queries or several rules, the DataView's frames are.
    """
    from hds_s3.tools.coco import export_coco, stored_coco_meta

    spec = view_spec(params)
    plain = (
        len(spec.rules) == 1
        and params["view_file"] is None
        and not set(spec.rules[0]) - {"dataset_name", "dataset_id", "version_name", "version_id"}
    )
    if plain:
        rule = spec.rules[0]
        v = get_version(
            env,
            rule.get("dataset_name"),
            rule.get("dataset_id"),
            rule.get("version_name"),
            rule.get("version_id"),
        )
        result = export_coco(v, output, image_root=image_root)
        what = f"{v.dataset_name!r} / {v.name!r}"
    else:
        view = build_dataview(env, spec)
        meta = None
        first = spec.rules[0]
        if first.get("dataset_name") not in (None, "*") or first.get("dataset_id") is not None:
            try:
                base = get_version(
                    env,
                    first.get("dataset_name"),
                    first.get("dataset_id"),
                    first.get("version_name"),
                    first.get("version_id"),
                )
                meta = stored_coco_meta(base)
            except HdsError:
                meta = None
        result = export_coco(view, output, image_root=image_root, coco_meta=meta)
        what = "the DataView"
    skipped = (
        f" ({plural(result.skipped_rois, 'ROI')} without a COCO form skipped)" if result.skipped_rois else ""
    )
    emit(
        env,
        {
            "output": output,
            "images": result.images,
            "annotations": result.annotations,
            "categories": result.categories,
            "skipped_rois": result.skipped_rois,
        },
        f"wrote {plural(result.images, 'image')}, {plural(result.annotations, 'annotation')}, "
        f"{plural(result.categories, 'category', 'categories')} of {what} to {output}{skipped}",
    )


# ---------------------------------------------------------------------------- store maintenance

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``.

    Raises:
        click.BadParameter: anything else, or a negative duration.
    """
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:], None)
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a duration; write e.g. 3600, 90s, 15m, 24h or 7d", param_hint="--grace"
        ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise click.BadParameter(f"{value!r}: the grace period must be >= 0 and finite", param_hint="--grace")
    return seconds


@cli.command("fsck")
@click.option("--repair", is_flag=True, help="Complete pending roll-forwards of finished transitions.")
@click.option("--deep", is_flag=True, help="Also read every segment in use and check its schema.")
@_yes_option
@pass_env
def fsck_command(env: Env, repair: bool, deep: bool, yes: bool) -> None:
    """Check the store: damage, pending roll-forwards, garbage (read-only unless --repair).

    --repair asks for confirmation at a terminal when it has something to change (elsewhere --yes
    is needed). Exits with 1 when something is damaged (after printing the report).
    """
    from hds_s3.tools.fsck import fsck

    report = fsck(env.client, deep=deep)
    if repair:
        todo = [f for f in report.findings if f.kind == "pending" or f.code == "marker-missing"]
        if todo:
            confirm(yes, f"repair {plural(len(todo), 'finding')} in {report.store}")
            report = fsck(env.client, repair=True, deep=deep)
    emit(env, report.to_dict(), lambda: _cli_words(report.summary()))
    damage = [f for f in report.damage if not f.repaired]  # a rewritten store marker is damage repaired
    if damage:
        raise CommandError(
            f"{plural(len(damage), 'damaged object or document', 'damaged objects or documents')} "
            f"in {report.store}; see the report",
            kind="DamageFound",
        )


@cli.command("gc")
@click.option("--delete", "delete", is_flag=True, help="Remove the garbage [default: only list it].")
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="Keep garbage younger than this (e.g. 3600, 30m, 24h, 7d); 0 only when nobody else writes.",
)
@_yes_option
@pass_env
def gc_command(env: Env, delete: bool, grace: str, yes: bool) -> None:
    """Remove objects no document refers to, once older than the grace period (a dry run by default).

    --delete asks for confirmation at a terminal when there is something to remove (elsewhere --yes
    is needed). Exits with 1 when some removals failed (they stay garbage for the next run).
    """
    from hds_s3.tools.gc import gc

    seconds = parse_duration(grace)
    report = gc(env.client, grace_seconds=seconds, dry_run=True)
    if delete and report.removed:
        size = report.bytes_removed
        confirm(yes, f"remove {plural(len(report.removed), 'object')} ({size} bytes) from {report.store}")
        report = gc(env.client, grace_seconds=seconds, dry_run=False)
    elif delete:
        report = gc(env.client, grace_seconds=seconds, dry_run=False)  # nothing to remove: no question
    emit(env, report.to_dict(), lambda: _cli_words(report.summary()))
    if report.failed:
        first = report.failed[0]
        raise CommandError(
            f"{plural(len(report.failed), 'removal')} failed (first: {first.key}: {first.reason})",
            kind="StorageError",
        )


@cli.command("upgrade")
@click.option("--dry-run", is_flag=True, help="Only say what would be converted; write nothing.")
@_yes_option
@pass_env
def upgrade_command(env: Env, dry_run: bool, yes: bool) -> None:
    """Convert a store of format 1 to format 2, in place (writes to format 1 are refused until then).

    Each dataset converts on its own and safely: an interrupted run is completed by the next one,
    and a store already converted is left as it is. Stop writers of older hds_s3 versions first.
    Asks for confirmation at a terminal when there is something to convert (elsewhere --yes is
    needed). Exits with 1 when a dataset could not be converted (the report says why).
    """
    from hds_s3.tools.upgrade import upgrade

    plan = upgrade(env.client, dry_run=True)
    report = plan
    if not dry_run:
        if plan.converted:
            confirm(yes, f"convert {plural(len(plan.converted), 'dataset')} of {plan.store} to format 2")
        bar = _progress(env, "upgrade", total=len(plan.converted) + plan.already, unit="dataset")
        try:
            report = upgrade(env.client, progress=lambda done, total, name: bar.update(1))
        finally:
            bar.close()
    emit(env, report.to_dict(), lambda: _cli_words(report.summary()))
    if report.problems:
        raise CommandError(
            f"{plural(len(report.problems), 'dataset')} not converted; see the report",
            kind="UpgradeIncomplete",
        )


# ---------------------------------------------------------------------------- entry point


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``hds`` (the console script) and end the process with the command's exit code.

    The process ends with ``os._exit`` once stdout and stderr are flushed: every write of a command
    is complete (synchronous) by then, and skipping the interpreter's teardown avoids an intermittent
    abort ("terminate called without an active exception", exit 134) that pyarrow's native threads
    cause at shutdown after Parquet reads from worker threads (apache/arrow#34314).

    Raises:
        SystemExit: never returns (the process ends).
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="hds")
        code = 0  # pragma: no cover - cli.main always exits
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BrokenPipeError:  # e.g. `hds frames export - | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except BaseException:  # --debug: the traceback, then exit 1
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


__all__ = ["CommandError", "Env", "cli", "main"]


# ---------------------------------------------------------------------------- commands of other modules
# (imported last: they use the helpers above)


def _more_commands() -> None:
    from hds_s3.cli import changes, dataviews, exchange

    versions.add_command(changes.versions_diff)
    frames.add_command(changes.frames_history)
    query.add_command(dataviews.query_stats)
    cli.add_command(dataviews.dataviews)
    cli.add_command(exchange.yolo)
    cli.add_command(exchange.voc)
    cli.add_command(exchange.hf)


_more_commands()

if __name__ == "__main__":
    main()

from hds_s3.cli.ui import ui as _ui  # noqa: E402 - last: hds_s3.cli.ui imports this module

cli.add_command(_ui)
