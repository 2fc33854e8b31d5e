"""What the fake recorded: REST calls, rate-limit rules, and the view of one interaction's answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord


@dataclass
class RestCall:
    """One REST request: `json` for JSON bodies, else `payload_json` parsed; `files` maps field -> (filename, bytes)."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def content(self) -> str:
        data = self.json.get("data", self.json) if isinstance(self.json, dict) and "type" in self.json else self.json
        return str((data or {}).get("content") or "") if isinstance(data, dict) else ""

    @property
    def flags(self) -> int:
        data = self.json.get("data", self.json) if isinstance(self.json, dict) and "type" in self.json else self.json
        return int((data or {}).get("flags") or 0) if isinstance(data, dict) else 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & 64)


@dataclass
class RateLimit:
    method: str
    path_contains: str
    remaining: int
    retry_after: float


@dataclass
class SentInteraction:
    """An interaction the fake sent; reads what the bot answered (callback, followups, edits) from `fake.calls`."""

    fake: FakeDiscord
    id: int
    token: str
    sent_at: float

    @property
    def calls(self) -> list[RestCall]:
        return [c for c in self.fake.calls if f"/{self.token}" in c.path]

    @property
    def callback(self) -> RestCall | None:
        return next((c for c in self.calls if c.path.startswith("/interactions/")), None)

    @property
    def deferred(self) -> bool:
        return self.callback is not None and self.callback.json.get("type") == 5

    @property
    def followups(self) -> list[RestCall]:
        return [c for c in self.calls if c.method == "POST" and c.path.startswith("/webhooks/")]

    @property
    def edits(self) -> list[RestCall]:
        return [c for c in self.calls if c.method == "PATCH"]

    @property
    def uploads(self) -> list[RestCall]:
        return [c for c in self.calls if c.files]

    @property
    def texts(self) -> list[str]:
        return [c.content for c in self.calls if c.content]

    @property
    def replies(self) -> list[RestCall]:
        """Everything visible to the user: an immediate message (type 4), followups and edits."""
        return [c for c in self.calls if c.content or c.files]

    def answered(self) -> bool:
        """A final answer came: a type 4 callback, or a followup after a deferral."""
        callback = self.callback
        return callback is not None and (callback.json.get("type") != 5 or bool(self.followups))
