"""Errors a user caused and can fix. The bot's one error handler turns each into an ephemeral reply with its message;
anything else is logged with its traceback and answered with a polite apology."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused request; `str(error)` is shown to the user as is, so it must say what to do."""


class QueueFull(UserError):
    pass


class UnknownVoice(UserError):
    pass


class NotYourVoice(UserError):
    pass


class NotInVoice(UserError):
    pass


class BadAttachment(UserError):
    pass


class NotAllowed(UserError):
    pass


class DatabaseBusy(UserError):
    """The database failed before a request was accepted (locked, down, out of space): nothing was done, and
    trying again in a moment is all the user can do. The cause is logged where it is caught."""
