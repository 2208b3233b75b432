"""Record types on Longtide's topics: Arrow schemas, frozen dataclasses, IPC codec."""

from schemas.codec import decode, encode, from_mapping, headers_for, record_id
from schemas.records import (
    SCHEMA_VERSION,
    AnswerKind,
    DeadLetter,
    Document,
    MemoryUpdate,
    PolicyVersion,
    RawDocument,
    Rollout,
    SchemaError,
    ScoredRollout,
    Task,
    now_ms,
)

__all__ = [
    "SCHEMA_VERSION",
    "AnswerKind",
    "DeadLetter",
    "Document",
    "MemoryUpdate",
    "PolicyVersion",
    "RawDocument",
    "Rollout",
    "SchemaError",
    "ScoredRollout",
    "Task",
    "decode",
    "encode",
    "from_mapping",
    "headers_for",
    "now_ms",
    "record_id",
]
