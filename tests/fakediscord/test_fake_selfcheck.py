"""The fake Discord checked with a throwaway discord.py client (not the narrator bot): login, command sync, slash
commands, defer + followup with a file, autocomplete, attachment download, voice with audio decoded back, every
injected fault (429, gateway RECONNECT, voice close 4015/4014, a voice server that stops answering), members' chat
messages (create, edit, delete; blanked without the content intent) and a refused privileged intent (close 4014)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import discord
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf
from discord import app_commands
from discord.ext import commands

from tests.fakediscord.audio import audible_span, best_alignment, cadence, mono_float
from tests.fakediscord.harness import client_options, start_client, stop_client, wait_until
from tests.fakediscord.messages import (
    MESSAGE_CONTENT,
    SUPPRESS_NOTIFICATIONS,
    TYPE_MEMBER_JOIN,
    TYPE_REPLY,
)
from tests.fakediscord.server import APP_ID, FakeDiscord

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

GUILD, USER = 3000, 2000
TONE_HZ = 440.0


def sine_48k_stereo(seconds: float, hz: float = TONE_HZ) -> tuple[np.ndarray, bytes]:
    """(mono float reference, the same as 48 kHz stereo s16le PCM bytes for discord.PCMAudio)."""
    t = np.arange(int(48_000 * seconds)) / 48_000
    mono = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    stereo = np.repeat((mono * 32767).astype("<i2")[:, None], 2, axis=1)
    return mono, stereo.tobytes()


class ToneBot(commands.Bot):
    """/tone (defer, play 1 s of sine in the caller's channel, followup with a WAV), /pick (autocomplete),
    /size (reads an attachment)."""

    def __init__(self, **options) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), **options)
        self.reference, self.pcm = sine_48k_stereo(1.0)

    async def setup_hook(self) -> None:
        @app_commands.command(name="tone")
        async def tone(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            voice = await interaction.user.voice.channel.connect()
            done = asyncio.Event()
            voice.play(discord.PCMAudio(io.BytesIO(self.pcm)), after=lambda _: self.loop.call_soon_threadsafe(done.set))
            await done.wait()
            buffer = io.BytesIO()
            sf.write(buffer, self.reference, 48_000, format="WAV")
            await interaction.followup.send("here", file=discord.File(io.BytesIO(buffer.getvalue()), "tone.wav"))
            await interaction.edit_original_response(content="played")

        @app_commands.command(name="pick")
        async def pick(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"picked {name}", ephemeral=True)

        @pick.autocomplete("name")
        async def pick_names(interaction: discord.Interaction, current: str):
            return [app_commands.Choice(name=n, value=n) for n in ("alice", "albert", "bob") if n.startswith(current)]

        @app_commands.command(name="size")
        async def size(interaction: discord.Interaction, sample: discord.Attachment) -> None:
            data = await sample.read()
            await interaction.response.send_message(f"{sample.filename}: {len(data)} bytes", ephemeral=True)

        for command in (tone, pick, size):
            self.tree.add_command(command)
        await self.tree.sync()


@pytest_asyncio.fixture
async def tone_bot(fake_discord: FakeDiscord) -> AsyncIterator[ToneBot]:
    fake_discord.add_guild(GUILD, [USER])
    bot = ToneBot(**client_options(fake_discord))
    task = asyncio.create_task(bot.start("fake-token"))
    await wait_until(lambda: bot.is_ready() or task.done(), 15, "the client to be ready")
    if task.done():
        task.result()
    yield bot
    await bot.close()
    await asyncio.wait_for(task, 10)


async def test_login_sync_defer_followup_file_and_voice_audio(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    assert any(c.method == "PUT" and c.path == f"/applications/{APP_ID}/commands" for c in fake_discord.calls)
    sent = await fake_discord.command(GUILD, USER, "tone")
    await wait_until(lambda: sent.edits, 20, "the original response to be edited")
    assert sent.deferred
    (upload,) = sent.uploads
    name, data = upload.files["files[0]"]
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert name == "tone.wav" and rate == 48_000 and np.allclose(audio, tone_bot.reference, atol=1e-4)
    assert sent.edits[-1].path.endswith("/messages/@original") and sent.edits[-1].content == "played"

    packets = fake_discord.udp.guild_packets(GUILD)
    heard = audible_span(packets)
    assert 48 <= len(heard) <= 51  # 50 frames of tone (the first and last may be partly quiet)
    assert [p.sequence for p in packets] == list(range(packets[0].sequence, packets[0].sequence + len(packets)))
    assert np.all(np.diff([p.timestamp for p in packets]) == 960)
    assert sum(p.is_end_of_speech for p in packets) == 5
    match = best_alignment(mono_float(packets), tone_bot.reference, 2000)
    assert match.correlation > 0.99, match
    assert abs(np.median(cadence(packets).gaps_ms) - 20.0) < 2.0
    assert not fake_discord.udp.errors


async def test_autocomplete_and_attachment_download(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    typing = [{"name": "name", "type": 3, "value": "al", "focused": True}]
    sent = await fake_discord.command(GUILD, USER, "pick", typing, kind=4)
    await wait_until(lambda: sent.callback, 10, "the autocomplete answer")
    assert sent.callback.json == {"type": 8, "data": {"choices": [{"name": "alice", "value": "alice"},
                                                                 {"name": "albert", "value": "albert"}]}}  # fmt: skip
    file = fake_discord.offer_file("clip.bin", b"x" * 1234)
    options = [{"name": "sample", "type": 11, "value": file["id"]}]
    sent = await fake_discord.command(GUILD, USER, "size", options, resolved={"attachments": {file["id"]: file}})
    await wait_until(lambda: sent.callback, 10, "the /size answer")
    assert sent.texts == ["clip.bin: 1234 bytes"] and sent.callback.ephemeral


async def test_http_429_is_retried_by_discord_py(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    fake_discord.fault_rate_limit("POST", "/interactions/", times=2, retry_after=0.05)
    sent = await fake_discord.command(GUILD, USER, "pick", [{"name": "name", "type": 3, "value": "bob"}])
    await wait_until(lambda: sent.callback, 10, "the answer after two 429s")
    assert len(fake_discord.rate_limited) == 2 and sent.texts == ["picked bob"]


async def test_gateway_reconnect_resumes_and_keeps_serving(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    await fake_discord.fault_gateway_reconnect()
    await wait_until(lambda: fake_discord.resumes == 1, 15, "a gateway RESUME")
    assert fake_discord.identifies == 1
    sent = await fake_discord.command(GUILD, USER, "pick", [{"name": "name", "type": 3, "value": "alice"}])
    await wait_until(lambda: sent.callback, 10, "an answer after the resume")


async def test_voice_close_4015_resumes_and_4014_disconnects(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    voice = await tone_bot.get_guild(GUILD).voice_channels[0].connect(timeout=10)
    await fake_discord.fault_close_voice(GUILD, 4015)
    await wait_until(lambda: any(op["op"] == 7 for _, op in fake_discord.voice_ops), 15, "a voice RESUME")
    await wait_until(lambda: voice.is_connected() and fake_discord.voice_connected(GUILD), 15, "the resumed voice")
    await fake_discord.fault_disconnect_bot(GUILD)
    await wait_until(lambda: not voice.is_connected(), 15, "the client to drop voice after 4014")
    assert tone_bot.get_guild(GUILD).voice_client is None


async def test_silent_voice_server_times_out_the_connect(fake_discord: FakeDiscord, tone_bot: ToneBot) -> None:
    fake_discord.fault_voice_silent()
    with pytest.raises(asyncio.TimeoutError):
        await tone_bot.get_guild(GUILD).voice_channels[0].connect(timeout=1.5, reconnect=False)
    assert not fake_discord.udp.packets


# -- chat messages and privileged intents -----------------------------------------------------------------------------


class ChatClient(discord.Client):
    """Records what a plain discord.py client receives for messages in the guild."""

    def __init__(self, intents: discord.Intents, **options) -> None:
        super().__init__(intents=intents, **options)
        self.seen: list[discord.Message] = []
        self.edits: list[tuple[str, str]] = []
        self.deleted: list[int] = []

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        self.edits.append((before.content, after.content))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.deleted.append(payload.message_id)


def with_content() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


async def test_members_messages_reach_on_message_with_their_details(fake_discord: FakeDiscord) -> None:
    guild = fake_discord.add_guild(GUILD, [USER, USER + 1])
    guild.names[USER] = "Alice"
    guild.roles[GUILD + 50] = "Moderators"
    client = ChatClient(with_content(), **client_options(fake_discord))
    task = await start_client(client)
    try:
        await fake_discord.post_message(GUILD, USER, f"hi <@{USER + 1}> <@&{GUILD + 50}>", mentions=[USER + 1],
                                        mention_roles=[GUILD + 50],
                                        attachments=[("cat.png", "image/png", b"png!")])  # fmt: skip
        await fake_discord.post_message(GUILD, USER, "shh", flags=SUPPRESS_NOTIFICATIONS, type=TYPE_REPLY)
        await fake_discord.post_message(GUILD, USER + 500, "beep", bot=True)  # another bot, not a cached member
        await fake_discord.post_message(GUILD, USER + 1, "hooked", webhook=True)
        await fake_discord.post_message(GUILD, USER + 1, "", type=TYPE_MEMBER_JOIN)
        await wait_until(lambda: len(client.seen) == 5, 10, "five messages")
        downloaded = await client.seen[0].attachments[0].read()
    finally:
        await stop_client(client, task)
    first, silent, from_bot, from_hook, joined = client.seen
    assert first.content == f"hi <@{USER + 1}> <@&{GUILD + 50}>" and first.channel.id == guild.text_channel
    assert isinstance(first.author, discord.Member) and first.author.display_name == "Alice"
    assert not first.author.bot and first.webhook_id is None
    assert [m.id for m in first.mentions] == [USER + 1] and [r.name for r in first.role_mentions] == ["Moderators"]
    (attachment,) = first.attachments
    assert attachment.content_type == "image/png" and attachment.filename == "cat.png" and downloaded == b"png!"
    assert silent.flags.suppress_notifications and silent.type is discord.MessageType.reply
    assert not first.flags.suppress_notifications and first.type is discord.MessageType.default
    assert from_bot.author.bot and from_hook.webhook_id is not None
    assert joined.type is discord.MessageType.new_member


async def test_edits_and_deletes_reach_the_client(fake_discord: FakeDiscord) -> None:
    fake_discord.add_guild(GUILD, [USER])
    client = ChatClient(with_content(), **client_options(fake_discord))
    task = await start_client(client)
    try:
        posted = await fake_discord.post_message(GUILD, USER, "frist")
        await wait_until(lambda: client.seen, 10, "the message")
        await fake_discord.edit_message(posted, "first")
        await wait_until(lambda: client.edits, 10, "the edit")
        await fake_discord.delete_message(posted)
        await wait_until(lambda: client.deleted, 10, "the deletion")
    finally:
        await stop_client(client, task)
    assert client.edits == [("frist", "first")] and client.deleted == [posted.id]
    assert posted.delivered == ["MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"]


async def test_without_the_content_intent_messages_arrive_blank_unless_they_mention_the_bot(
    fake_discord: FakeDiscord,
) -> None:
    fake_discord.add_guild(GUILD, [USER])
    client = ChatClient(discord.Intents.default(), **client_options(fake_discord))
    task = await start_client(client)
    try:
        await fake_discord.post_message(GUILD, USER, "secret words", attachments=[("a.txt", "text/plain", b"x")])
        await fake_discord.post_message(GUILD, USER, f"<@{APP_ID}> hello bot", mentions=[APP_ID])
        await wait_until(lambda: len(client.seen) == 2, 10, "two messages")
    finally:
        await stop_client(client, task)
    blank, mentioned = client.seen
    assert blank.content == "" and blank.attachments == []
    assert mentioned.content == f"<@{APP_ID}> hello bot"


async def test_a_refused_message_content_intent_closes_with_4014(fake_discord: FakeDiscord) -> None:
    fake_discord.add_guild(GUILD, [USER])
    fake_discord.refuse_intents(MESSAGE_CONTENT)
    client = ChatClient(with_content(), **client_options(fake_discord))
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await start_client(client)
    await client.close()
    assert fake_discord.identified_intents[-1] & MESSAGE_CONTENT and fake_discord.identifies == 0
    # the same bot without the privileged intent connects and still gets (blank) message events
    client = ChatClient(discord.Intents.default(), **client_options(fake_discord))
    task = await start_client(client)
    try:
        await fake_discord.post_message(GUILD, USER, "typed words")
        await wait_until(lambda: client.seen, 10, "a message")
    finally:
        await stop_client(client, task)
    assert fake_discord.identifies == 1 and client.seen[0].content == ""
