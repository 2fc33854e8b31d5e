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
