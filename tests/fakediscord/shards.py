"""Sharding bits of the fake Discord: `GET /gateway/bot` (what `AutoShardedBot` asks before it connects) and which
shard a guild belongs to (Discord's rule: `(guild_id >> 22) % shard_count`)."""

from __future__ import annotations


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


def bot_gateway(gateway_url: str, shards: int) -> dict:
    return {
        "url": gateway_url,
        "shards": shards,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 16},
    }


def connection_for(connections: dict, event: str, data: dict):
    """The live gateway connection of the shard that owns the event's guild, or None (not sharded, no guild, or
    that shard is not connected). `connections`: shard id -> (websocket, shard count)."""
    if len(connections) < 2:
        return None
    guild = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
    if guild is None:
        return None
    count = next(iter(connections.values()))[1]
    entry = connections.get(shard_of(int(guild), count))
    if entry is None or entry[0].closed:
        return None
    return entry[0]
