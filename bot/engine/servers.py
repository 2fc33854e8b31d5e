"""The speech servers a RemoteEngine spreads renders over: which one a guild uses, and which ones are down.

A guild goes to the server with the highest rendezvous hash of (route, url): spread evenly, stable while servers
come and go (only the guilds of a server that goes down move). A server that fails a request or its health check is
marked down for `down_for_s` and tried again only after that, or when every server is down.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass


@dataclass
class Server:
    url: str  # base URL, no trailing slash
    kind: str = "unknown"  # narrator | vllm-omni | unknown (not reached yet)
    down_until: float = 0.0
    last_error: str = ""

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until


def rendezvous(route: str, url: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{route}\x00{url}".encode()).digest()[:8], "big")


class ServerPool:
    def __init__(self, urls: list[str], down_for_s: float = 15.0) -> None:
        if not urls:
            raise ValueError("at least one speech server URL is needed")
        self.servers = [Server(url.rstrip("/")) for url in urls]
        self.down_for_s = down_for_s
        self._lock = threading.Lock()

    def order(self, route: str | None) -> list[Server]:
        """Every server to try, best first: up ones by rendezvous hash of `route`, then the down ones."""
        key = route or ""
        ranked = sorted(self.servers, key=lambda s: rendezvous(key, s.url), reverse=True)
        with self._lock:
            return [s for s in ranked if s.up] + [s for s in ranked if not s.up]

    def mark_down(self, server: Server, error: str) -> None:
        with self._lock:
            server.down_until = time.monotonic() + self.down_for_s
            server.last_error = error

    def mark_up(self, server: Server) -> None:
        with self._lock:
            server.down_until = 0.0
            server.last_error = ""
