"""Where conversations live, for the CLI and the service alike."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    """``HANDOFF_DATA_DIR`` (default ``./.handoff``) holds the SQLite checkpoints and the
    back office ledger; ``HANDOFF_DB`` overrides the checkpoint URL (``memory``, a
    ``.sqlite`` path, or ``postgresql://...``)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path(".handoff"), alias="HANDOFF_DATA_DIR")
    db: str | None = Field(default=None, alias="HANDOFF_DB")

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'handoff.sqlite'}"
