"""The one exception type rejuv raises for bad input.

The CLI turns it into a one-line message and a non-zero exit; anything else is
a bug and keeps its traceback.
"""


class RejuvError(Exception):
    """Bad input or an impossible request, described for the user."""
