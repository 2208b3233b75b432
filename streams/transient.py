"""Transient errors: what may pass if tried again, as opposed to what is wrong with a record.

A timeout, a refused or reset connection, an S3 request that failed (pyarrow raises those as
`OSError`), an engine out of memory (`torch.OutOfMemoryError`, told by name so this layer needs
no torch) or an explicit `Transient` may pass: the stream processor and the learner retry
them with backoff before a record is dead-lettered. A missing file, a decode or a validation
error will fail the same way every time: it is permanent at once.

    records = retrying(lambda: handle(batch), attempts=2, on_retry=count)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.5
"""The wait before the first retry; each further retry waits twice as long."""
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


class Transient(Exception):
    """Raised by a handler to say: this failure is not the record's, try it again."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (Transient, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, PERMANENT_OS_ERRORS):
        return True
    return type(exc).__name__ == "OutOfMemoryError"


def retrying(
    call: Callable[[], T],
    *,
    attempts: int,
    first_delay_s: float = FIRST_DELAY_S,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()`, tried again up to `attempts` more times while it raises a transient error
    (waiting `first_delay_s`, then twice as long each time); anything else, or the last
    transient error, is raised."""
    for attempt in range(attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = first_delay_s * 2**attempt
            log.warning(
                "transient error (%s: %s); retry %d of %d in %.1f s",
                type(exc).__name__,
                exc,
                attempt + 1,
                attempts,
                delay,
            )
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
    raise AssertionError("unreachable")
