"""Where a command's conversations are stored, and errors that name the setting that chose it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from handoff.cli.errors import CliError
from handoff.graphs.persistence import Persistence, PersistenceError, open_persistence
from handoff.graphs.settings import StorageSettings


def storage_url(db: str | None) -> tuple[str, str]:
    """The persistence URL and where it came from (``--db``, ``HANDOFF_DB`` or ``HANDOFF_DATA_DIR``)."""
    if db:
        return db, "--db"
    settings = StorageSettings()
    if settings.db:
        return settings.db, "HANDOFF_DB"
    return settings.db_url, f"HANDOFF_DATA_DIR={settings.data_dir}"


@contextmanager
def storage_errors(source: str) -> Iterator[None]:
    """Name ``source`` in a storage error: a path alone does not tell a user which setting to fix.

    Only the setting's name is added for ``--db`` and ``HANDOFF_DB``: a PostgreSQL URL may carry a
    password, and the error already shows what of it is safe to show.
    """
    try:
        yield
    except PersistenceError as exc:
        raise CliError(f"{exc} (set by {source})") from None


@contextmanager
def open_store(db: str | None) -> Iterator[Persistence]:
    """The command's checkpointer and store.

    Raises:
        CliError: the URL is unusable or the database cannot be opened; the message names the setting.
    """
    url, source = storage_url(db)
    with ExitStack() as stack:
        with storage_errors(source):
            persistence = stack.enter_context(open_persistence(url))
        yield persistence
