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
    max_docs_ahead: int = 0
    """Backpressure (streams/backpressure.py): while synthesis is more than this many documents
    behind on `docs`, ingest stops reading `docs.raw` (raw documents wait in the log), and reads
    again at half of it. 0 (the default) never pauses: synthesis itself pauses on the rollout
    actors, so pacing ingest on synthesis would tie the memory actor's documents to the RL
    loop (a finished learner would stop memory ingestion); set it where only synthesis reads
    `docs`."""
    """Ray resources per instance."""
    max_text_bytes: int = 64 * 1024 * 1024
    """Texts larger than this (UTF-8 bytes) are dead-lettered instead of stored."""
    max_attrs_bytes: int = 64 * 1024
    """A document's `attrs` larger than this (keys and values, UTF-8 bytes) are dead-lettered:
    they travel inline in every `docs` record, never through the blob store."""
    max_field_chars: int = 4096
    """Longest `collection`, `source` or producer `doc_id`, in characters."""

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"ingest.instances ({self.instances}) must be >= 1")
        if self.max_docs_ahead < 0:
            raise ValueError(f"ingest.max_docs_ahead ({self.max_docs_ahead}) must be >= 0 (0: never pause)")
        if self.max_text_bytes < 1 or self.max_attrs_bytes < 0 or self.max_field_chars < 1:
            raise ValueError(
                f"ingest.max_text_bytes ({self.max_text_bytes}) and ingest.max_field_chars ({self.max_field_chars}) "
                f"must be >= 1, ingest.max_attrs_bytes ({self.max_attrs_bytes}) >= 0"
            )
