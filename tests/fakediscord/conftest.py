from __future__ import annotations

from tests.fakediscord.fixtures import fake_discord  # noqa: F401
