"""`FakeDiscord`: REST, gateway and voice gateway (TLS) on 127.0.0.1 with aiohttp, plus `voice.VoiceUdp`.

Everything the bot sends is recorded (`calls`, `gateway_ops`, `voice_ops`, `udp.packets`) so tests can assert on it;
`fault_*` methods inject failures (HTTP 429, voice close codes, gateway RECONNECT, a voice server that goes quiet).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakediscord import payloads, shards
from tests.fakediscord.messages import ChatMixin
from tests.fakediscord.payloads import FakeGuild
from tests.fakediscord.records import RateLimit, RestCall, SentInteraction
from tests.fakediscord.tls import SelfSignedCertificate, make_certificate
from tests.fakediscord.voice import VoiceUdp

log = logging.getLogger(__name__)

APP_ID = 1000
OWNER_ID = 1999


@dataclass
class _VoiceConnection:
    ws: web.WebSocketResponse
    guild_id: int = 0
    ssrc: int = 0
    key: bytes = b""
    mode: str = ""
    seq: int = 0

    async def send(self, op: int, data: dict) -> None:
        self.seq += 1
        await self.ws.send_json({"op": op, "d": data, "seq": self.seq})


class FakeDiscord(ChatMixin):
    """A fake Discord for one bot application with any number of guilds (`add_guild` before the bot connects).

    Chat (`post_message`, `edit_message`, `delete_message`, `refuse_intents`) is in `messages.ChatMixin`."""

    app_id = APP_ID

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.guilds: dict[int, FakeGuild] = {}
        self.calls: list[RestCall] = []
        self.gateway_ops: list[dict] = []  # every op the bot sent on the main gateway
        self.voice_ops: list[tuple[int, dict]] = []  # (guild id, op) the bot sent on voice websockets
        self.cdn: dict[str, bytes] = {}  # attachment path -> bytes (uploads by the bot and files for the bot)
        self.rate_limits: list[RateLimit] = []
        self.rate_limited: list[RestCall] = []
        self.voice_silent = False
        self.identifies = 0
        self.recommended_shards = 1  # GET /gateway/bot's shard count
        self.resumes = 0
        self._seq = 0
        self._ids = itertools.count(500_000)
        self._ssrcs = itertools.count(101)
        self._gateway: web.WebSocketResponse | None = None  # the last connected (the only one unless sharded)
        self._shards: dict[int, tuple[web.WebSocketResponse, int]] = {}  # shard id -> (connection, shard count)
        self._voice: dict[int, _VoiceConnection] = {}  # guild id -> the bot's live voice websocket
        self._closed_voice: dict[int, _VoiceConnection] = {}  # guild id -> the last one closed (for RESUME)
        self._interactions = itertools.count(7000)
        self._runners: list[web.AppRunner] = []
        self._init_chat()

    # -- lifecycle -----------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.certificate: SelfSignedCertificate = make_certificate(self.folder / "tls")
        api = web.Application(client_max_size=128 * 1024 * 1024)
        api.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        api.router.add_get("/attachments/{tail:.*}", self._attachment)
        api.router.add_get("/gateway", self._gateway_ws)
        voice = web.Application()
        voice.router.add_get("/", self._voice_ws)
        self.port = await self._serve(api, None)
        self.voice_port = await self._serve(voice, self.certificate.server_context())
        self.udp = VoiceUdp()

    async def _serve(self, app: web.Application, ssl_context) -> int:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for connection in list(self._voice.values()):
            await connection.ws.close()
        if self._gateway is not None:
            await self._gateway.close()
        for runner in self._runners:
            await runner.cleanup()
        self.udp.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/attachments/{path}"

    def add_guild(self, guild_id: int, members: list[int], in_voice: list[int] | None = None) -> FakeGuild:
        guild = FakeGuild(guild_id, members[0], list(members))
        for uid in in_voice if in_voice is not None else members:
            guild.voice[uid] = guild.voice_channel
        self.guilds[guild_id] = guild
        return guild

    # -- REST ----------------------------------------------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py compares Content-Type to "application/json" exactly (aiohttp's json_response adds a charset)
        return web.Response(body=json.dumps(data).encode(), status=status,
                            headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip

    async def _read_call(self, request: web.Request) -> RestCall:
        call = RestCall(time.monotonic(), request.method, "/" + request.match_info["tail"], dict(request.query))
        if request.content_type == "application/json":
            call.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            form = await request.post()
            for name, value in form.items():
                if name == "payload_json":
                    call.json = json.loads(value)
                elif isinstance(value, web.FileField):
                    call.files[name] = (value.filename, value.file.read())
        return call

    def _take_rate_limit(self, call: RestCall) -> RateLimit | None:
        for limit in self.rate_limits:
            if limit.remaining > 0 and limit.method == call.method and limit.path_contains in call.path:
                limit.remaining -= 1
                return limit
        return None

    async def _rest(self, request: web.Request) -> web.Response:
        call = await self._read_call(request)
        limit = self._take_rate_limit(call)
        if limit is not None:
            self.rate_limited.append(call)
            body = {"message": "You are being rate limited.", "retry_after": limit.retry_after, "global": False}
            # a 429 without `Via` looks like a Cloudflare ban to discord.py (it raises instead of retrying)
            return self._json(body, 429, {"Via": "1.1 google", "Retry-After": str(limit.retry_after)})
        self.calls.append(call)
        return self._json(self._answer(call))

    def _answer(self, call: RestCall) -> Any:
        path, parts = call.path, call.path.strip("/").split("/")
        if path == "/users/@me":
            return payloads.user(APP_ID, bot=True)
        if path == "/gateway/bot":
            return shards.bot_gateway(self.gateway_url, self.recommended_shards)
        if path == "/oauth2/applications/@me":
            return {"id": str(APP_ID), "name": "narrator", "description": "", "icon": None, "bot_public": True,
                    "bot_require_code_grant": False, "owner": payloads.user(OWNER_ID), "verify_key": "00",
                    "flags": 0}  # fmt: skip
        if path.endswith("/commands") and call.method in ("PUT", "GET"):
            commands = call.json or []
            return [{"type": 1, "description": "", **c, "id": str(next(self._ids)), "application_id": str(APP_ID),
                     "version": "1"} for c in commands]  # fmt: skip
        if parts[0] == "interactions":
            return self._callback(parts[1], call)
        if call.method == "DELETE":
            return {}
        return self._message_for(call)

    def _callback(self, interaction_id: str, call: RestCall) -> dict:
        kind = int((call.json or {}).get("type", 4))
        message = self._message_for(call) if kind in (4, 5) else None
        return {"interaction": {"id": interaction_id, "type": 2, "response_message_id": message and message["id"],
                                "response_message_loading": kind == 5, "response_message_ephemeral": call.ephemeral,
                                "activity_instance_id": None},
                "resource": {"type": kind} | ({"message": message} if message else {})}  # fmt: skip

    def _message_for(self, call: RestCall) -> dict:
        """Store any uploaded files under /attachments/ and answer with a message object listing them."""
        attachments = []
        for _, (filename, data) in sorted(call.files.items()):
            aid = next(self._ids)
            self.cdn[f"{aid}/{filename}"] = data
            attachments.append(payloads.attachment(aid, filename, len(data), self.url(f"{aid}/{filename}")))
        parts = call.path.strip("/").split("/")
        channel = int(parts[1]) if parts[0] == "channels" else 0
        body = call.json.get("data", {}) if parts[0] == "interactions" else (call.json or {})
        mid = parts[-1] if call.method == "PATCH" and parts[-1] != "@original" else str(next(self._ids))
        return payloads.message(int(mid) if mid.isdigit() else next(self._ids), channel, APP_ID, body, attachments)

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.cdn.get(request.match_info["tail"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, headers={"Content-Type": "application/octet-stream"})

    # -- gateway -------------------------------------------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict, ws: web.WebSocketResponse | None = None) -> None:
        """Send one op 0 event to the bot: on `ws`, else on the connection of the event's guild's shard."""
        ws = ws or shards.connection_for(self._shards, event, data) or self._gateway
        assert ws is not None, "the bot is not connected to the gateway"
        self._seq += 1
        await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _gateway_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._gateway = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.gateway_ops.append(data)
            await self._on_gateway_op(data, ws)
        return ws

    async def _on_gateway_op(self, data: dict, ws: web.WebSocketResponse) -> None:
        op = data["op"]
        if op == 1:
            await ws.send_json({"op": 11})
        elif op == 2 and not await self._check_identify(data["d"]):
            self.identifies += 1
            shard, count = data["d"].get("shard") or (0, 1)
            self._shards[shard] = (ws, count)
            await self._ready(ws, shard, count)
        elif op == 6:
            self.resumes += 1
            await self.dispatch("RESUMED", {}, ws)
        elif op == 4:
            await self._voice_state_update(data["d"])

    async def _ready(self, ws: web.WebSocketResponse, shard: int = 0, count: int = 1) -> None:
        """READY and GUILD_CREATE for the guilds of this connection's shard (all of them when not sharded)."""
        guilds = [g for g in self.guilds.values() if shards.shard_of(g.id, count) == shard]
        await self.dispatch("READY", {
            "v": 10, "user": payloads.user(APP_ID, bot=True), "session_id": f"gateway-session-{shard}",
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds], "shard": [shard, count],
            "resume_gateway_url": self.gateway_url, "application": {"id": str(APP_ID), "flags": 0}}, ws)  # fmt: skip
        for guild in guilds:
            await self.dispatch("GUILD_CREATE", guild.to_dict(APP_ID), ws)

    async def _voice_state_update(self, data: dict) -> None:
        """Op 4 from the bot (snowflakes arrive as ints): echo its voice state, and a voice server when joining."""
        guild_id = int(data["guild_id"])
        channel = None if data.get("channel_id") is None else int(data["channel_id"])
        guild = self.guilds[guild_id]
        if channel is None:
            guild.voice.pop(APP_ID, None)
        else:
            guild.voice[APP_ID] = channel
        # Server update first: a client that is already connected (re-joining after close 4015) moves to
        # "got voice server update" on it and needs the state update after it; a fresh join accepts either order.
        if channel is not None:
            await self.dispatch("VOICE_SERVER_UPDATE", {"token": f"vtok{guild_id}", "guild_id": str(guild_id),
                                                        "endpoint": f"127.0.0.1:{self.voice_port}"})  # fmt: skip
        await self.dispatch("VOICE_STATE_UPDATE", payloads.voice_state(guild_id, APP_ID, channel, "voice-session",
                                                                       bot=True))  # fmt: skip

    # -- voice gateway -------------------------------------------------------------------------------------------------
    async def _voice_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        connection = _VoiceConnection(ws)
        await connection.send(8, {"heartbeat_interval": 13750})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT or self.voice_silent:
                continue  # binary frames are DAVE (declined); a silent server ignores everything
            data = json.loads(msg.data)
            self.voice_ops.append((connection.guild_id, data))
            await self._on_voice_op(connection, data)
        if self._voice.get(connection.guild_id) is connection:
            self._closed_voice[connection.guild_id] = self._voice.pop(connection.guild_id)
        return ws

    async def _on_voice_op(self, connection: _VoiceConnection, data: dict) -> None:
        op, d = data["op"], data.get("d") or {}
        if op == 0:  # IDENTIFY
            connection.guild_id, connection.ssrc = int(d["server_id"]), next(self._ssrcs)
            self._voice[connection.guild_id] = connection
            self.udp.register(connection.ssrc, connection.guild_id)
            await connection.send(
                2,
                {
                    "ssrc": connection.ssrc,
                    "ip": "127.0.0.1",
                    "port": self.udp.port,
                    "modes": ["aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize"],
                },
            )
        elif op == 1:  # SELECT_PROTOCOL
            connection.mode, connection.key = d["data"]["mode"], os.urandom(32)
            assert connection.mode == "aead_xchacha20_poly1305_rtpsize", connection.mode
            self.udp.set_key(connection.ssrc, connection.key)
            await self._session_description(connection)
        elif op == 7:  # RESUME after close 4015: same SSRC and key; discord.py waits for a new SESSION_DESCRIPTION
            previous = self._resumable(int(d["server_id"]))
            connection.guild_id, connection.ssrc = previous.guild_id, previous.ssrc
            connection.mode, connection.key = previous.mode, previous.key
            self._voice[connection.guild_id] = connection
            await connection.send(9, {})
            await self._session_description(connection)
        elif op == 3:
            await connection.ws.send_json({"op": 6, "d": {"t": d.get("t")}})

    async def _session_description(self, connection: _VoiceConnection) -> None:
        await connection.send(4, {"mode": connection.mode, "secret_key": list(connection.key),
                                  "dave_protocol_version": 0})  # fmt: skip

    def _resumable(self, guild_id: int) -> _VoiceConnection:
        found = self._closed_voice.get(guild_id) or self._voice.get(guild_id)
        assert found is not None, f"voice RESUME for guild {guild_id} without an earlier session"
        return found

    def voice_connected(self, guild_id: int) -> bool:
        return guild_id in self._voice and not self._voice[guild_id].ws.closed

    # -- driving the bot -----------------------------------------------------------------------------------------------
    async def command(self, guild_id: int, user_id: int, name: str, options: list[dict] | None = None, *,
                      permissions: str = payloads.ALL_PERMISSIONS, resolved: dict | None = None,
                      kind: int = 2) -> SentInteraction:  # fmt: skip
        """Send INTERACTION_CREATE for `/name` (options as Discord sends them: [{name, type, value}], subcommands
        nested as type 1) from `user_id` in `guild_id`'s text channel; kind 4 = autocomplete."""
        iid = next(self._interactions)
        data = {"id": "1", "name": name, "type": 1, "options": options or []}
        if resolved:
            data["resolved"] = resolved
        guild = self.guilds[guild_id]
        await self.dispatch("INTERACTION_CREATE",
                            payloads.interaction(iid, APP_ID, kind, guild, user_id, data, permissions))  # fmt: skip
        return SentInteraction(self, iid, f"itok{iid}", time.monotonic())

    def offer_file(self, filename: str, data: bytes, *, size: int | None = None) -> dict:
        """Serve `data` as an attachment; returns the `resolved.attachments` entry (its `size` may be a lie)."""
        aid = next(self._ids)
        self.cdn[f"{aid}/{filename}"] = data
        return payloads.attachment(aid, filename, len(data) if size is None else size, self.url(f"{aid}/{filename}"))

    async def member_moves(self, guild_id: int, user_id: int, channel_id: int | None) -> None:
        guild = self.guilds[guild_id]
        if channel_id is None:
            guild.voice.pop(user_id, None)
        else:
            guild.voice[user_id] = channel_id
        await self.dispatch("VOICE_STATE_UPDATE", payloads.voice_state(guild_id, user_id, channel_id, f"s{user_id}"))

    def channel_messages(self, channel_id: int) -> list[RestCall]:
        return [c for c in self.calls if c.method == "POST" and c.path == f"/channels/{channel_id}/messages"]

    def bot_voice_channel(self, guild_id: int) -> int | None:
        """Where the bot's last op 4 put it in `guild_id` (None: not in voice)."""
        return self.guilds[guild_id].voice.get(APP_ID)

    # -- fault injection -----------------------------------------------------------------------------------------------
    def fault_rate_limit(self, method: str, path_contains: str, times: int = 1, retry_after: float = 0.05) -> None:
        """The next `times` matching REST calls get HTTP 429 with `retry_after` seconds (discord.py retries)."""
        self.rate_limits.append(RateLimit(method, path_contains, times, retry_after))

    async def fault_close_voice(self, guild_id: int, code: int) -> None:
        """Close the bot's voice websocket in `guild_id` with `code` (4015: server crashed, the bot resumes)."""
        connection = self._voice[guild_id]
        await connection.ws.close(code=code, message=b"fake fault")

    async def fault_disconnect_bot(self, guild_id: int) -> None:
        """What Discord does when the bot is kicked from voice: VOICE_STATE_UPDATE(channel null), then close 4014."""
        self.guilds[guild_id].voice.pop(APP_ID, None)
        await self.dispatch("VOICE_STATE_UPDATE", payloads.voice_state(guild_id, APP_ID, None, "voice-session",
                                                                       bot=True))  # fmt: skip
        if guild_id in self._voice:
            await self.fault_close_voice(guild_id, 4014)

    async def fault_gateway_reconnect(self) -> None:
        """Op 7 RECONNECT: the bot closes the gateway and RESUMEs on `resume_gateway_url`."""
        assert self._gateway is not None
        await self._gateway.send_json({"op": 7, "d": None})

    def fault_voice_silent(self, silent: bool = True) -> None:
        """The voice server stops answering: no heartbeat acks, no handshake replies, no IP discovery."""
        self.voice_silent = silent
        self.udp.silent = silent
