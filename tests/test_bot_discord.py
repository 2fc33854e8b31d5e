"""The real bot (real discord.py client, real worker, real narration on tiny checkpoints) against a small fake Discord
on 127.0.0.1: REST, gateway, TLS voice gateway and voice UDP. Only Discord is faked. The full scenario suite lives in
tests/e2e/ (FAKEDISCORD helper); this is the bot's own smoke test of its Discord glue.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import ssl
import struct
import time
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import nacl.secret
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf
import yarl
from aiohttp import web

from bot.launcher import open_bot
from bot.opus import ensure_opus
from bot.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(240)]

APP, USER, GUILD, TEXT, VOICE = 1000, 2000, 3000, 3001, 3002
USER2, GUILD2 = 2001, 4000  # a second guild: text channel GUILD2 + 1, voice channel GUILD2 + 2
MEMBER_OF = {GUILD: USER, GUILD2: USER2}
SSRC = {GUILD: 42, GUILD2: 43}
ALL = str(discord.Permissions.all().value)
NOW = datetime.datetime.now(datetime.timezone.utc).isoformat()
OPUS_SILENCE = b"\xf8\xff\xfe"


def _user(uid: int) -> dict:
    return {"id": str(uid), "username": f"u{uid}", "discriminator": "0", "global_name": None, "avatar": None,
            "bot": uid == APP}  # fmt: skip


def _member(uid: int) -> dict:
    return {"user": _user(uid), "roles": [], "joined_at": NOW, "deaf": False, "mute": False, "flags": 0}


def _message(mid: int, content: str | None) -> dict:
    return {"id": str(mid), "channel_id": str(TEXT), "author": _user(APP), "content": content or "", "timestamp": NOW,
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": False, "type": 20, "flags": 0, "components": []}  # fmt: skip


def _tls(folder: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "key.pem").write_bytes(pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return ctx


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) == 74 and data[1] == 1:  # IP discovery
            reply = struct.pack(">HHI", 2, 70, struct.unpack(">I", data[4:8])[0])
            self.transport.sendto(reply + addr[0].encode().ljust(64, b"\0") + struct.pack(">H", addr[1]), addr)
        else:
            self.fake.rtp.append((time.monotonic(), data))


class FakeDiscord:
    """Just enough Discord for one guild, one member in one voice channel, and the bot."""

    def __init__(self) -> None:
        self.rest: list[tuple[str, str, object]] = []
        self.rtp: list[tuple[float, bytes]] = []
        self.files: dict[str, bytes] = {}
        self.key = bytes(range(32))
        self.seq = 0
        self.mid = 10
        self.gw = None
        self.vws: dict[int, web.WebSocketResponse] = {}  # guild id -> the bot's voice websocket
        self.voice_ops: list[int | None] = []  # channel ids of the bot's op 4 voice state updates

    async def start(self, folder: Path) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.api)
        app.router.add_get("/gateway", self.gateway)
        app.router.add_get("/cdn/{name}", self.cdn)
        vapp = web.Application()
        vapp.router.add_get("/", self.voice)
        self.runners = [web.AppRunner(app), web.AppRunner(vapp)]
        for runner in self.runners:
            await runner.setup()
        site, vsite = (
            web.TCPSite(self.runners[0], "127.0.0.1", 0),
            web.TCPSite(self.runners[1], "127.0.0.1", 0, ssl_context=_tls(folder)),
        )
        await site.start()
        await vsite.start()
        self.port, self.vport = (s._server.sockets[0].getsockname()[1] for s in (site, vsite))
        self.udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Udp(self), local_addr=("127.0.0.1", 0)
        )
        self.uport = self.udp.get_extra_info("sockname")[1]
        discord.http.Route.BASE = f"http://127.0.0.1:{self.port}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    async def stop(self) -> None:
        self.udp.close()
        for runner in self.runners:
            await runner.cleanup()

    async def cdn(self, request: web.Request) -> web.Response:
        return web.Response(body=self.files[request.match_info["name"]])

    @staticmethod
    def _json(data: object) -> web.Response:  # discord.py wants exactly "application/json" (no charset)
        return web.Response(body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})

    async def api(self, request: web.Request) -> web.Response:
        path, body = "/" + request.match_info["tail"], None
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart"):
            form = await request.post()
            body = {k: v if isinstance(v, str) else (v.filename, v.file.read()) for k, v in form.items()}
        self.rest.append((request.method, path, body))
        if path == "/users/@me":
            return self._json(_user(APP))
        if path == "/oauth2/applications/@me":
            return self._json({"id": str(APP), "name": "n", "description": "", "icon": None, "bot_public": True,
                               "bot_require_code_grant": False, "owner": _user(USER), "verify_key": "k"})  # fmt: skip
        if "/commands" in path:
            return self._json([c | {"id": str(i + 1), "application_id": str(APP), "version": "1"}
                               for i, c in enumerate(body or [])])  # fmt: skip
        if path.startswith("/interactions/"):
            return self._json({"interaction": {"id": path.split("/")[2], "type": 2, "response_message_loading": True},
                               "resource": {"type": body.get("type", 4)}})  # fmt: skip
        self.mid += 1
        content = body.get("content") if isinstance(body, dict) else None
        return self._json(_message(self.mid, content))

    async def dispatch(self, event: str, data: dict) -> None:
        self.seq += 1
        await self.gw.send_json({"op": 0, "t": event, "s": self.seq, "d": data})

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = self.gw = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for msg in ws:
            data = json.loads(msg.data)
            if data["op"] == 1:
                await ws.send_json({"op": 11})
            elif data["op"] == 2:
                await self.dispatch("READY", {"v": 10, "user": _user(APP), "session_id": "s",
                                              "guilds": [{"id": str(g), "unavailable": True} for g in MEMBER_OF],
                                              "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                                              "application": {"id": str(APP), "flags": 0}})  # fmt: skip
                for guild_id in MEMBER_OF:
                    await self.dispatch("GUILD_CREATE", self.guild(guild_id))
            elif data["op"] == 4:
                self.voice_ops.append(data["d"]["channel_id"])
                await self.voice_state(data["d"]["channel_id"], int(data["d"]["guild_id"]))
        return ws

    async def voice_state(self, channel_id: int | None, guild_id: int = GUILD) -> None:
        await self.dispatch("VOICE_STATE_UPDATE", {
            "guild_id": str(guild_id), "channel_id": None if channel_id is None else str(channel_id),
            "user_id": str(APP), "session_id": "vs", "deaf": False, "mute": False, "self_deaf": True,
            "self_mute": False, "suppress": False, "member": _member(APP)})  # fmt: skip
        if channel_id is not None:
            await self.dispatch("VOICE_SERVER_UPDATE", {"token": "vt", "guild_id": str(guild_id),
                                                        "endpoint": f"127.0.0.1:{self.vport}"})  # fmt: skip

    def guild(self, gid: int) -> dict:
        user = MEMBER_OF[gid]
        everyone = {"id": str(gid), "name": "@everyone", "permissions": ALL, "position": 0, "color": 0,
                    "hoist": False, "managed": False, "mentionable": False}  # fmt: skip
        voice_state = {"user_id": str(user), "channel_id": str(gid + 2), "session_id": "u", "deaf": False,
                       "mute": False, "self_deaf": False, "self_mute": False, "suppress": False}  # fmt: skip
        return {"id": str(gid), "name": "g", "owner_id": str(user), "roles": [everyone],
                "channels": [{"id": str(gid + 1), "type": 0, "name": "t", "position": 0, "permission_overwrites": []},
                             {"id": str(gid + 2), "type": 2, "name": "v", "position": 1, "permission_overwrites": [],
                              "bitrate": 64000, "user_limit": 0}],
                "members": [_member(user), _member(APP)], "voice_states": [voice_state], "member_count": 2,
                "unavailable": False, "threads": [], "stage_instances": [], "guild_scheduled_events": [],
                "emojis": [], "stickers": [], "features": [], "premium_tier": 0}  # fmt: skip

    async def voice(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        guild_id = GUILD
        await ws.send_json({"op": 8, "d": {"heartbeat_interval": 13750}, "seq": 1})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["op"] == 0:
                guild_id = int(data["d"]["server_id"])
                self.vws[guild_id] = ws
                await ws.send_json({"op": 2, "d": {"ssrc": SSRC[guild_id], "ip": "127.0.0.1", "port": self.uport,
                                                   "modes": ["aead_xchacha20_poly1305_rtpsize"]}, "seq": 2})  # fmt: skip
            elif data["op"] == 1:
                await ws.send_json({"op": 4, "d": {"mode": data["d"]["data"]["mode"], "secret_key": list(self.key),
                                                   "dave_protocol_version": 0}, "seq": 3})  # fmt: skip
            elif data["op"] == 3:
                await ws.send_json({"op": 6, "d": {"t": data["d"]["t"]}})
        return ws

    async def command(
        self, iid: int, name: str, options: list, *, perms: str = ALL, resolved: dict | None = None, guild: int = GUILD
    ) -> None:
        data = {"id": "1", "name": name, "type": 1, "options": options} | ({"resolved": resolved} if resolved else {})
        await self.dispatch("INTERACTION_CREATE", {
            "id": str(iid), "application_id": str(APP), "type": 2, "token": f"tok{iid}", "version": 1,
            "guild_id": str(guild), "channel_id": str(guild + 1), "channel": {"id": str(guild + 1), "type": 0},
            "member": _member(MEMBER_OF[guild]) | {"permissions": perms}, "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": ALL, "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {}, "context": 0, "data": data})  # fmt: skip

    def replies(self, iid: int) -> list[tuple[str, object]]:
        return [(method, body) for method, path, body in self.rest if f"/tok{iid}" in path]

    def heard(self, guild: int = GUILD) -> np.ndarray:
        """Everything the guild's channel received, decoded: (n,) float32 at 48 kHz (left channel)."""
        decoder, pcm = discord.opus.Decoder(), []
        for _, packet in self.rtp:
            if struct.unpack(">I", packet[8:12])[0] != SSRC[guild]:
                continue
            opus = nacl.secret.Aead(self.key).decrypt(packet[12:-4], packet[:12], packet[-4:] + b"\0" * 20)
            if opus != OPUS_SILENCE:
                pcm.append(np.frombuffer(decoder.decode(opus, fec=False), "<i2").reshape(-1, 2)[:, 0])
        return np.concatenate(pcm).astype(np.float32) / 32768 if pcm else np.zeros(0, np.float32)

    def audible_packets(self, after: float = 0.0, guild: int = GUILD) -> list[float]:
        """Arrival times of a guild's RTP packets whose decoded audio is not silence."""
        decoder, times = discord.opus.Decoder(), []
        for t, packet in self.rtp:
            if struct.unpack(">I", packet[8:12])[0] != SSRC[guild]:
                continue
            opus = nacl.secret.Aead(self.key).decrypt(packet[12:-4], packet[:12], packet[-4:] + b"\0" * 20)
            if opus == OPUS_SILENCE:
                continue
            pcm = np.frombuffer(decoder.decode(opus, fec=False), "<i2").astype(np.float32)
            if t >= after and np.sqrt((pcm**2).mean()) > 300:
                times.append(t)
        return times


def heard_vs_master(heard: np.ndarray, master: np.ndarray) -> float:
    """Pearson correlation of the heard 48 kHz audio with the 24 kHz master, at the best lag."""
    from bot.voice_source import upsample_utterance

    ref = np.frombuffer(upsample_utterance(master.astype(np.float32)), "<i2").reshape(-1, 2)[:, 0] / 32768
    size = 1 << int(np.ceil(np.log2(len(heard) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[: max(1, len(heard) - len(ref) // 2)]))
    n = min(len(ref), len(heard) - lag)
    return float(np.corrcoef(heard[lag : lag + n], ref[:n])[0, 1])


async def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def say(script: str) -> list:
    return [{"name": "script", "type": 3, "value": script}]


@pytest.fixture
def settings(tmp_path: Path, tiny_custom_voice, tiny_base, tiny_voice_design) -> Settings:
    ensure_opus()
    return Settings(
        custom_voice_model=str(tiny_custom_voice), base_model=str(tiny_base), voice_design_model=str(tiny_voice_design),
        device="cpu", dtype="float32", data_dir=tmp_path / "data", outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", dev_guild_id=GUILD,
    )  # fmt: skip


@pytest_asyncio.fixture
async def fake(tmp_path: Path):
    fake = FakeDiscord()
    await fake.start(tmp_path)
    yield fake
    await fake.stop()


class running:
    """`async with running(settings) as bot`: open_bot + start against the fake, ready on enter, closed on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self):
        self.ctx = open_bot(self.settings, connector=aiohttp.TCPConnector(ssl=False), guild_ready_timeout=0.05)
        bot = await self.ctx.__aenter__()
        self.task = asyncio.create_task(bot.start("token"))
        await until(lambda: bot.is_ready() or self.task.done(), 30)
        if self.task.done():
            self.task.result()
        return bot

    async def __aexit__(self, *exc) -> None:
        await self.ctx.__aexit__(*exc)
        self.task.cancel()


async def test_say_stop_register_and_voice_drop(fake: FakeDiscord, settings: Settings) -> None:
    async with running(settings) as bot:
        assert any(path.endswith(f"/guilds/{GUILD}/commands") for _, path, _ in fake.rest)  # dev-guild sync only

        # /say: deferred, progress edits, audio in the channel before the master, master as an attachment
        await fake.command(1, "say", say("[Calm] Hello there. [Pause 0.3s] [Excited] What a day!"))
        await until(lambda: any(isinstance(b, dict) and "files[0]" in b for _, b in fake.replies(1)))
        master_at = time.monotonic()
        replies = fake.replies(1)
        assert replies[0] == ("POST", {"type": 5})
        edits = [b["content"] for m, b in replies if m == "PATCH"]
        assert edits[0] in ("Starting…",) and edits[-1].startswith("Done:")
        upload = next(b for _, b in replies if isinstance(b, dict) and "files[0]" in b)
        assert json.loads(upload["payload_json"])["allowed_mentions"] == {"parse": []}
        name, data = upload["files[0]"]
        audio, sr = sf.read(io.BytesIO(data))
        assert name.endswith(".wav") and sr == 24_000 and len(audio) > 0
        assert fake.audible_packets() and fake.audible_packets()[0] < master_at
        # once it has played out, what the channel heard is the master (up to Opus and a constant delay)
        await asyncio.sleep(max(0.0, fake.audible_packets()[0] + len(audio) / sr + 0.5 - time.monotonic()))
        assert heard_vs_master(fake.heard(), audio) >= 0.9
        start = fake.audible_packets()[0]
        times = np.array([t for t, _ in fake.rtp if start <= t <= start + len(audio) / sr])
        # A catch-up burst is a run of back-to-back packets. Here bot and fake share one process and event loop on
        # a busy machine, so a lone early packet after a late one is scheduling noise; the discriminating test of
        # the pacing is tests/test_voice_source.py (discord.py's own player, a starved thread).
        short = np.diff(times) < 0.005
        assert short.mean() < 0.02, f"packets went out in bursts ({short.sum()} of {len(short)} gaps under 5 ms)"

        # /stop mid-stream: silent within 200 ms of the command reaching the bot; the next /say works
        said_at = time.monotonic()
        await fake.command(2, "say", say("A long line that will be stopped. " * 3))
        await until(lambda: len(fake.audible_packets(after=said_at)) > 20, 60)
        stopped_at = time.monotonic()
        await fake.command(3, "stop", [])
        await asyncio.sleep(0.8)
        late = [t - stopped_at for t in fake.audible_packets(after=stopped_at)]
        assert max(late, default=0) < 0.2, late
        await until(lambda: fake.replies(2)[-1][1].get("content") == "Stopped.", 5)

        # /voices register: valid, corrupt, oversized, and from a member without Manage Server
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(np.arange(32_000) * 2 * np.pi * 200 / 16_000)).astype(np.float32), 16_000,
                 format="WAV")  # fmt: skip
        fake.files |= {"ok.wav": buf.getvalue(), "bad.wav": b"RIFF" + bytes(100)}

        def register(voice: str, file: str, size: int) -> tuple[list, dict]:
            url = f"http://127.0.0.1:{fake.port}/cdn/{file}"
            options = [
                {
                    "name": "register",
                    "type": 1,
                    "options": [
                        {"name": "name", "type": 3, "value": voice},
                        {"name": "sample", "type": 11, "value": "77"},
                        {"name": "transcript", "type": 3, "value": "hello"},
                        {"name": "consent", "type": 5, "value": True},
                    ],
                }
            ]
            attachment = {"id": "77", "filename": file, "size": size, "url": url, "proxy_url": url}
            return options, {"attachments": {"77": attachment}}  # fmt: skip

        for iid, (voice, file, size, perms) in enumerate(
            [("Reader", "ok.wav", len(fake.files["ok.wav"]), ALL), ("Broken", "bad.wav", 104, ALL),
             ("Huge", "ok.wav", 10**9, ALL), ("Sneaky", "ok.wav", 100, "0")], start=10):  # fmt: skip
            options, resolved = register(voice, file, size)
            await fake.command(iid, "voices", options, perms=perms, resolved=resolved)
        await until(lambda: all(len(fake.replies(i)) >= 2 for i in (10, 11)) and fake.replies(12) and fake.replies(13))
        texts = {i: str(fake.replies(i)[-1][1]) for i in (10, 11, 12, 13)}
        assert "Registered **Reader**" in texts[10]
        assert "not a sound file" in texts[11] and "'flags': 64" in texts[11]
        assert "the limit is" in texts[12] and "'flags': 64" in texts[12]
        assert "Manage Guild".lower() in texts[13].lower() and "'flags': 64" in texts[13]
        assert [v.name for v in await bot.services.voices.list(GUILD, USER)] == ["Reader"]

        # voice connection dropped mid-stream: the user is told, the master still comes, the bot keeps serving
        await fake.command(20, "say", say("This line loses its voice connection halfway. " * 2))
        await until(lambda: len(fake.audible_packets(after=stopped_at + 1)) > 20, 60)
        await fake.voice_state(None)
        await fake.vws[GUILD].close(code=4014)
        await until(lambda: any(isinstance(b, dict) and "files[0]" in b for _, b in fake.replies(20)), 60)
        assert any("lost the voice connection" in str(b) for _, b in fake.replies(20))
        await fake.command(21, "say", say("Back again."))
        await until(lambda: any(isinstance(b, dict) and "files[0]" in b for _, b in fake.replies(21)), 60)

        # the last member leaves the channel: the bot leaves too (auto-leave is on by default)
        assert fake.voice_ops[-1] == VOICE
        await fake.dispatch("VOICE_STATE_UPDATE", {
            "guild_id": str(GUILD), "channel_id": None, "user_id": str(USER), "session_id": "u", "deaf": False,
            "mute": False, "self_deaf": False, "self_mute": False, "suppress": False, "member": _member(USER)})  # fmt: skip
        await until(lambda: fake.voice_ops[-1] is None, 10)


async def test_restart_mid_render_reports_the_interrupted_render(fake: FakeDiscord, settings: Settings) -> None:
    async with running(settings):
        await fake.command(1, "say", say("This render is interrupted by a restart. " * 3))
        await until(lambda: len(fake.audible_packets()) > 5, 60)
    assert any("restarting" in str(b) for _, b in fake.replies(1))
    fake.rest.clear()
    async with running(settings):
        await until(lambda: any(path == f"/channels/{TEXT}/messages" for _, path, _ in fake.rest), 20)
    notice = next(b for _, path, b in fake.rest if path == f"/channels/{TEXT}/messages")
    assert f"<@{USER}>" in notice["content"] and "interrupted" in notice["content"]
    assert [int(u) for u in notice["allowed_mentions"]["users"]] == [USER]


async def test_two_guilds_at_once_both_get_their_audio(fake: FakeDiscord, settings: Settings) -> None:
    async with running(settings):
        await fake.command(1, "say", say("[Calm] First guild speaking now."))
        await fake.command(2, "say", say("[Excited] Second guild speaking too!"), guild=GUILD2)

        def posted(iid: int) -> bool:
            return any(isinstance(b, dict) and "files[0]" in b for _, b in fake.replies(iid))

        await until(lambda: posted(1) and posted(2), 120)
        await until(lambda: fake.audible_packets(guild=GUILD) and fake.audible_packets(guild=GUILD2), 30)
        first = {g: fake.audible_packets(guild=g)[0] for g in (GUILD, GUILD2)}
        assert abs(first[GUILD] - first[GUILD2]) < 30  # the later one waited for one render, not for ever
