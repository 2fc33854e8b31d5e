"""The storage layer's own exceptions: each carries one sentence a person can act on (no traceback needed)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error `db` raises on purpose."""


class DatabaseUnusable(StorageError):
    """The database cannot be opened or read: a corrupt or foreign file, a folder that cannot be written, a server
    that refuses the connection. The message is one line: what is wrong, then what to do."""


class VoiceNameTaken(StorageError):
    """Another voice already has this name (compared by `voice_name_key`) where names must be unique."""


class NotTheSpeaker(StorageError):
    """Only the speaker whose voice was cloned may confirm or revoke it."""


class InvalidSetting(StorageError, ValueError):
    """A setting value outside its allowed range or set."""
