"""The ingest actor's configuration (section `ingest`). Importable without torch: the CLI and the
launcher read it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.settings import Resources


@dataclass(frozen=True)
class IngestConfig:
    """Ingestion settings."""

    instances: int = 1
    """Ingest actors (they share `docs.raw` through a consumer group)."""
    resources: Resources = field(default_factory=Resources)
    """Ray resources per instance."""
    max_text_bytes: int = 64 * 1024 * 1024
    """Texts larger than this are dead-lettered instead of stored."""

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"ingest.instances ({self.instances}) must be >= 1")
