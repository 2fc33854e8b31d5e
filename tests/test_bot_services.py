from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from bot.app import build_engines
from bot.errors import BadAttachment, NotYourVoice, UnknownVoice, UserError
from bot.narration.identity import vector_bytes, vector_from_bytes
from bot.services import Services
from bot.services.creation import VoiceCreation
from bot.services.guild_config import GuildConfig
from bot.services.library import VoiceLibrary, check_name
from bot.services.progress import MIN_EDIT_INTERVAL_S, InteractionReporter, progress_line
from bot.settings import Settings
from bot.voice.attachments import attachment_for
from db import repo
from db.engine import open_database
from tests.services import services_for

GUILD, ALICE, BOB = 10, 1, 2


@pytest_asyncio.fixture
async def services(tmp_path: Path):
    settings = Settings(
        device="cpu",
        data_dir=tmp_path / "data",
        outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        max_upload_bytes=200_000,
        max_reference_seconds=3,
    )
    db = await open_database(settings.database_url)
    yield services_for(settings, db)
    await db.close()


async def _add(voices: VoiceLibrary, **kw) -> repo.Voice:
    values = {"guild_id": GUILD, "owner_id": ALICE, "scope": "guild", "kind": "preset", "name": "narrator"} | kw
    return await voices.add(repo.NewVoice(**values))


@pytest.mark.asyncio
async def test_resolve_tells_unknown_from_someone_elses(services: Services) -> None:
    voices = services.library
    await _add(voices, name="bobs", scope="personal", owner_id=BOB)
    with pytest.raises(NotYourVoice, match="someone else's"):
        await voices.resolve(GUILD, ALICE, "bobs")
    with pytest.raises(UnknownVoice, match="/voice list"):
        await voices.resolve(GUILD, ALICE, "ghost")
    assert (await voices.resolve(GUILD, BOB, "BOBS")).owner_id == BOB


@pytest.mark.asyncio
async def test_say_voice_order_explicit_then_lock_then_default(services: Services) -> None:
    voices = services.library
    lib = await _add(voices, name="library")
    mine = await _add(voices, name="mine", scope="personal")
    assert await voices.for_say(GUILD, ALICE, None) is None
    await services.guild_config.update(GUILD, default_voice="library")
    assert (await voices.for_say(GUILD, ALICE, None)).id == lib.id
    await voices.lock(GUILD, ALICE, "mine")
    assert (await voices.for_say(GUILD, ALICE, None)).id == mine.id
    assert (await voices.for_say(GUILD, ALICE, "library")).id == lib.id
    assert (await voices.for_say(GUILD, BOB, None)).id == lib.id  # Bob has no lock


@pytest.mark.asyncio
async def test_names_are_checked_and_duplicates_refused(services: Services) -> None:
    with pytest.raises(UserError, match="not a usable voice name"):
        check_name("../../etc/passwd")
    await _add(services.library, name="taken")
    with pytest.raises(UserError, match="already exists"):
        await services.library.ensure_free(GUILD, BOB, "guild", "Taken")
    assert await services.library.ensure_free(GUILD, BOB, "personal", "taken") == "taken"
    assert await services.library.names_starting(GUILD, ALICE, "TA") == ["taken"]


def test_vector_roundtrip() -> None:
    v = np.linspace(-1, 1, 16, dtype=np.float32)
    assert np.array_equal(vector_from_bytes(vector_bytes(v)), v)


@pytest.mark.asyncio
async def test_guild_config_limits(services: Services) -> None:
    config: GuildConfig = services.guild_config
    with pytest.raises(UserError, match="between 20"):
        await config.update(GUILD, max_script_chars=10**6)
    gs = await config.update(GUILD, max_script_chars=100, auto_leave=False)
    assert config.max_script_chars(gs) == 100 and "Leave when alone: no" in config.describe(gs)


def _wav(seconds: float, sr: int = 16_000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.mark.asyncio
async def test_reference_clip_validation(services: Services) -> None:
    ids: VoiceCreation = services.creation
    audio, sr = await ids.decode_reference(_wav(2.0), "ok.wav")
    assert sr == 24_000 and len(audio) == 48_000  # stored at the model rate
    with pytest.raises(BadAttachment, match="not a sound file I can read"):
        await ids.decode_reference(b"GIF89a" + bytes(500), "cat.gif")
    with pytest.raises(BadAttachment, match="cut off"):
        await ids.decode_reference(_wav(2.0)[:-5000], "cut.wav")
    with pytest.raises(BadAttachment, match=r"too long \(5.0 s, the limit is 3 s\)"):
        await ids.decode_reference(_wav(5.0, 8000), "long.wav")
    with pytest.raises(BadAttachment, match="shorter than"):
        await ids.decode_reference(_wav(0.2), "short.wav")
    with pytest.raises(BadAttachment, match="limit is 0.2 MB"):
        ids.check_upload(5_000_000, "huge.wav")


@pytest.mark.asyncio
async def test_clone_refuses_without_consent_before_any_model_work(services: Services) -> None:
    with pytest.raises(UserError, match="consent"):
        await services.creation.clone(GUILD, ALICE, "x", _wav(2.0), "a.wav", "hello", consent=False)
    assert len(services.queue) == 0


def test_master_attachment_falls_back_to_smaller_formats(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.1 * rng.standard_normal(24_000 * 4)).astype(np.float32), 24_000, subtype="PCM_16")
    size = path.stat().st_size
    assert attachment_for(path, size + 100_000).format == "wav"
    flac = attachment_for(path, size)  # no room for the envelope -> FLAC
    assert flac is not None and flac.format in ("flac", "opus") and len(flac.data) < size
    audio, sr = sf.read(io.BytesIO(flac.data))
    assert sr == 24_000 and abs(len(audio) - 24_000 * 4) < 24_000 * 0.1
    tiny = attachment_for(path, 16 * 1024 + 40_000)
    assert tiny is not None and tiny.format == "opus" and tiny.filename.endswith(".ogg")
    assert attachment_for(path, 16 * 1024 + 100) is None


class FakeInteraction:
    """Stands in for Discord's interaction endpoints: records edits and followups with their time."""

    filesize_limit = 10 * 1024 * 1024

    def __init__(self) -> None:
        self.edits: list[tuple[float, str]] = []
        self.followups: list[dict] = []
        self.followup = self

    async def edit_original_response(self, *, content: str, allowed_mentions) -> None:
        self.edits.append((time.monotonic(), content))

    async def send(self, content=None, **kw) -> None:
        self.followups.append({"content": content, **kw})


@pytest.mark.asyncio
async def test_progress_edits_at_most_once_a_second_and_latest_wins() -> None:
    fake = FakeInteraction()
    reporter = InteractionReporter(fake)  # type: ignore[arg-type]
    for k in range(1, 31):
        await reporter.status(progress_line(k, 30, k * 0.1, 3.0 - k * 0.1))
        await asyncio.sleep(0.05)
    await reporter.done("Done.", None)
    times = [t for t, _ in fake.edits]
    assert all(b - a >= MIN_EDIT_INTERVAL_S - 0.01 for a, b in zip(times, times[1:], strict=False))
    assert 2 <= len(fake.edits) <= 4
    assert fake.edits[-1][1] == "Done."
    shown = [int(text.split()[2]) for _, text in fake.edits[:-1]]
    assert shown == sorted(shown) and shown[0] == 1  # the first goes out at once, later ones coalesce
    assert progress_line(2, 5, 3.2, 7.4) == "Rendering segment 2 of 5 · 3 s elapsed · about 7 s left"


@pytest.mark.asyncio
async def test_master_goes_to_the_channel_when_the_interaction_token_expired() -> None:
    import discord

    from bot.voice.attachments import Attachment

    class Expired(FakeInteraction):
        """The 15-minute interaction token ran out: webhook followups with files are refused."""

        def __init__(self) -> None:
            super().__init__()
            self.channel_posts: list = []
            self.channel = SimpleNamespace(send=lambda text, **kw: _record(self.channel_posts, text, kw))

        async def send(self, content=None, **kw) -> None:
            if "file" in kw:
                raise discord.HTTPException(SimpleNamespace(status=401, reason="Unauthorized"), "Invalid Webhook Token")
            self.followups.append({"content": content, **kw})

    fake = Expired()
    reporter = InteractionReporter(fake)  # type: ignore[arg-type]
    await reporter.done("Done: 1.0 s of audio.", Attachment("narration-1.wav", b"RIFF", "wav"))
    assert len(fake.channel_posts) == 1
    text, kw = fake.channel_posts[0]
    assert text == "Done: 1.0 s of audio." and kw["file"].filename == "narration-1.wav"
    assert kw["allowed_mentions"].users is False and kw["allowed_mentions"].everyone is False


async def _record(posts: list, text: str, kw: dict) -> None:
    posts.append((text, kw))


@pytest.mark.asyncio
async def test_preset_speakers_are_usable_by_name(tmp_path: Path, tiny_custom_voice) -> None:
    settings = Settings(
        custom_voice_model=str(tiny_custom_voice), database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    )
    db = await open_database(settings.database_url)
    voices = VoiceLibrary(db, settings, build_engines(settings)[0])
    assert "vivian" in await voices.preset_speakers()
    assert "vivian" in await voices.names_starting(GUILD, ALICE, "viv")
    locked = await voices.lock(GUILD, ALICE, "Vivian")
    assert locked.kind == "preset" and locked.speaker == "vivian" and locked.scope == "guild"
    assert (await voices.resolve(GUILD, BOB, "vivian")).id == locked.id  # stored once, shared by the guild
    with pytest.raises(UnknownVoice):
        await voices.resolve(GUILD, ALICE, "nobody")
    await db.close()
