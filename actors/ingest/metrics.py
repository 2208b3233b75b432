"""The ingest actor's metrics (besides the stream metrics every actor has)."""

from __future__ import annotations

from prometheus_client import Counter

DOCUMENTS = Counter("longtide_ingest_documents", "Documents ingested (after dedup).", ["actor"])
TOKENS = Counter("longtide_ingest_tokens", "Tokens in ingested documents.", ["actor"])
