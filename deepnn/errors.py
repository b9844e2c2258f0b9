"""User-facing errors.

Every mistake a user can make (a bad model name, a missing dataset, a wrong image
size, a corrupt checkpoint) raises :class:`UserError` with a message that names the
problem and the fix. The CLI prints it as one line and exits with status 2; library
callers can catch it as a ``ValueError``.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input, explained in one line."""
