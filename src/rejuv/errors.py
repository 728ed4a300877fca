"""The one exception type rejuv raises for bad input, and its warnings.

The CLI turns a `RejuvError` into a one-line message and a non-zero exit;
anything else is a bug: also one line, naming the exception, and its traceback
with `rejuv --debug`. Warnings (a result to read
with care, not an error) go to the `rejuv` logger, which the CLI prints to
stderr as `warning: ...`, and into the output's JSON where there is one.
"""

import contextlib
import logging
from collections.abc import Iterator

logger = logging.getLogger("rejuv")


class RejuvError(Exception):
    """Bad input or an impossible request, described for the user."""


def warn(message: str) -> str:
    """Log `message` as a warning and return it (for the output's `warnings` list)."""
    logger.warning(message)
    return message


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Inside the block, rejuv's warnings are collected into the list yielded instead of being shown: a caller
    that runs many steps (the lab) says once what they had to say."""
    found: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        found.append(record.getMessage())
        return False

    logger.addFilter(keep)
    try:
        yield found
    finally:
        logger.removeFilter(keep)
