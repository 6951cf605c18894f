"""Errors a user can act on. The CLI prints their message on one line instead of a traceback."""


class UserError(RuntimeError):
    """Bad input or configuration; the message names what is wrong and how to fix it."""
