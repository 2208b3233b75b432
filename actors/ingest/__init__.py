"""Ingest: `docs.raw` -> `docs` (`actors.ingest.actor`), configured by `actors.ingest.config`."""
