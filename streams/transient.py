"""Transient errors: what may pass if tried again, as opposed to what is wrong with a record.

A timeout, a refused or reset connection, an S3 request that failed on the network or the
server's side (pyarrow raises those as `OSError` naming the AWS error), an engine out of memory
(`torch.OutOfMemoryError`, told by name so this layer needs no torch) or an explicit
`Transient` may pass: the stream processor and the learner retry them with backoff. One that
outlasts its retries is not the record's fault either: `retrying` raises `StillFailing`, which
the processor lets through like a `FatalError` (nothing committed, the actor restarts and
reads the record again), so a store that is being restarted costs time, never a record. A
missing file, an S3 request refused (a wrong key, no such bucket), a decode or a validation
error will fail the same way every time: permanent at once, the record is dead-lettered.

    records = retrying(lambda: handle(batch), attempts=2, on_retry=count)
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.5
"""The wait before the first retry; each further retry waits twice as long."""
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ETIMEDOUT,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EPIPE,
    }
)
REFUSED_BY_S3 = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY",
    "SIGNATURE",
    "NO_SUCH",
    "RESOURCE_NOT_FOUND",
    "INVALID_PARAMETER",
)
"""pyarrow's S3 errors that a retry cannot change (its message names the AWS error)."""


class Transient(Exception):
    """Raised by a handler to say: this failure is not the record's, try it again."""


class StillFailing(RuntimeError):
    """A transient error outlasted its retries: the actor's trouble, not the record's."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (Transient, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    if isinstance(exc, OSError) and exc.errno is None and "AWS Error" in str(exc):
        return not any(code in str(exc) for code in REFUSED_BY_S3)
    return type(exc).__name__ == "OutOfMemoryError"


def retrying(
    call: Callable[[], T],
    *,
    attempts: int,
    first_delay_s: float = FIRST_DELAY_S,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()`, tried again up to `attempts` more times while it raises a transient error
    (waiting `first_delay_s`, then twice as long each time); anything else is raised as it is,
    and a transient error still there after the last try as `StillFailing`."""
    for attempt in range(attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise StillFailing(f"{type(exc).__name__}: {exc} (still failing after {attempts} retries)") from exc
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
