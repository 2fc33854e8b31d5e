"""The eight end-to-end scenarios of the fake-Discord issue, run against the real bot (see conftest.py)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import db_backends
from tests.e2e.conftest import (
    ADMIN,
    GUILD,
    GUILD2,
    GUILD3,
    MEMBER,
    NO_PERMISSIONS,
    OTHER,
    THIRD,
    Narrator,
    packets_since,
    sidecar,
    wait_for_master,
    wait_for_quiet,
)
from tests.fakediscord.audio import audible_span, listen, match_segments
from tests.fakediscord.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(180)]
log = logging.getLogger(__name__)

THREE_EMOTIONS = "[Calm] Hello. [Pause 0.4s] [Excited] Wow! [Whispering] Bye."  # about 8 s from the tiny model
LONG_LINE = "This line keeps the narrator talking for a good while. " * 2  # about 40 s from the tiny model


def assert_steady(packets, label: str) -> None:
    """What a listener's client hears of the stream: with a normal (adaptive, NetEQ-like) jitter buffer starting at
    100 ms, no stutter (tests/fakediscord/audio.py `listen`, `Hearing.stutters`) and no catch-up bursts. Gap
    percentiles are in bench/voice_cadence.py."""
    hearing = listen(packets, jitter_ms=100.0)
    log.info("%s: %s", label, hearing.describe())
    assert not hearing.stutters, f"{label}: {hearing.describe()}, late by {[round(x) for x in hearing.late_ms]} ms"
    assert hearing.bursts == 0 and hearing.overflows == 0, f"{label}: {hearing.describe()}"


# 1 ---------------------------------------------------------------------------------------------------------------------
async def test_say_streams_live_matches_the_master_and_posts_it(narrator: Narrator) -> None:
    fake = narrator.fake
    sent = await narrator.say(THREE_EMOTIONS)
    master, rate, name = await wait_for_master(sent)
    await wait_for_quiet(fake, GUILD)

    assert sent.deferred
    progress = [e.content for e in sent.edits]
    assert any("segment" in text for text in progress), progress
    assert name.endswith(".wav") and rate == 24_000 and len(master) > rate // 2
    assert sent.uploads[0].json["allowed_mentions"] == {"parse": []}
    segments = sidecar(narrator.settings, name)["segments"]
    assert [seg["kind"] for seg in segments] == ["speech", "pause", "speech", "speech"], segments
    assert abs(segments[1]["seconds"] - 0.4) < 0.05 and all(seg["seconds"] > 0 for seg in segments)

    stream = audible_span(packets_since(fake, GUILD, sent.sent_at))
    assert stream, "no audible packet reached the voice channel"
    # the sidecar is written when the render finishes (before the upload): the first audio came before that
    (sidecar_path,) = narrator.settings.outputs_dir.rglob(f"{name.rsplit('.', 1)[0]}.json")
    finished_at = time.monotonic() - (time.time() - sidecar_path.stat().st_mtime)
    log.info("first audio %.2f s after /say, render finished %.2f s after", stream[0].at - sent.sent_at,
             finished_at - sent.sent_at)  # fmt: skip
    assert stream[0].at < finished_at, "the first audio came only after the render had finished"
    # Heard vs master per segment: silence may come between segments (a device slower than real time starts the next
    # one later), never inside one.
    matches = match_segments(stream, master, rate, [seg["seconds"] for seg in segments])
    log.info("master %.2f s, received %.2f s, correlation per segment %s", len(master) / rate, len(stream) * 0.02,
             [round(m.correlation, 4) for m in matches])  # fmt: skip
    assert len(matches) == 3 and all(m.correlation >= 0.9 for m in matches), matches
    assert_steady(stream, "/say")


# 2 ---------------------------------------------------------------------------------------------------------------------
def reference_clip(seconds: float = 2.0, rate: int = 16_000) -> bytes:
    """A WAV the voice library accepts as a reference: a gliding tone with a little noise (float32 in [-1, 1])."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (180 + 40 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    buffer = io.BytesIO()
    sf.write(buffer, tone.astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


async def register(narrator: Narrator, name: str, filename: str, data: bytes, *, size: int | None = None,
                   permissions: str | None = None, user: int = ADMIN):  # fmt: skip
    file = narrator.fake.offer_file(filename, data, size=size)
    options = [
        {
            "name": "register",
            "type": 1,
            "options": [
                {"name": "name", "type": 3, "value": name},
                {"name": "sample", "type": 11, "value": file["id"]},
                {"name": "transcript", "type": 3, "value": "hello there"},
                {"name": "consent", "type": 5, "value": True},
            ],
        }
    ]
    extra = {} if permissions is None else {"permissions": permissions}
    return await narrator.fake.command(GUILD, user, "voices", options, resolved={"attachments": {file["id"]: file}},
                                       **extra)  # fmt: skip


def final_text(sent) -> tuple[str, bool]:
    """(the last thing the caller was told, whether only they could see it)."""
    call = sent.replies[-1]
    ephemeral = call.ephemeral or (sent.callback is not None and sent.callback.ephemeral)
    return call.content, ephemeral


async def test_voice_lock_then_say_uses_the_locked_identity(narrator: Narrator) -> None:
    fake = narrator.fake
    registered = await register(narrator, "Reader", "reader.wav", reference_clip())
    await wait_until(registered.answered, 90, "the registration")
    assert "Registered **Reader**" in final_text(registered)[0]

    typing = [{"name": "lock", "type": 1, "options": [{"name": "name", "type": 3, "value": "Rea", "focused": True}]}]
    choices = await fake.command(GUILD, MEMBER, "voice", typing, kind=4)
    await wait_until(lambda: choices.callback, 10, "the autocomplete answer")
    assert {"name": "Reader", "value": "Reader"} in choices.callback.json["data"]["choices"]

    lock = [{"name": "lock", "type": 1, "options": [{"name": "name", "type": 3, "value": "Reader"}]}]
    locked = await fake.command(GUILD, MEMBER, "voice", lock)
    await wait_until(locked.answered, 10, "the lock")
    assert "Locked" in final_text(locked)[0] and final_text(locked)[1]

    sent = await narrator.say("[Calm] Hi.", user=MEMBER)
    _, _, name = await wait_for_master(sent)
    (voice,) = [v for v in await narrator.bot.services.library.list(GUILD, MEMBER) if v.name == "Reader"]
    identities = sidecar(narrator.settings, name)["identities"]
    assert list(identities) == [f"voice-{voice.id}"], identities


# 3 ---------------------------------------------------------------------------------------------------------------------
async def test_voices_register_valid_corrupt_oversized_and_non_admin(narrator: Narrator) -> None:
    valid = await register(narrator, "Reader", "reader.wav", reference_clip())
    # One upload per member is checked at a time (a second one meanwhile is asked to wait): send the next after it.
    await wait_until(valid.answered, 90, f"an answer to interaction {valid.id}")
    corrupt = await register(narrator, "Broken", "broken.wav", b"RIFF" + bytes(400))
    oversized = await register(narrator, "Huge", "huge.wav", reference_clip(), size=10**9)
    denied = await register(narrator, "Sneaky", "sneaky.wav", reference_clip(), permissions=NO_PERMISSIONS,
                            user=MEMBER)  # fmt: skip
    for sent in (valid, corrupt, oversized, denied):
        await wait_until(sent.answered, 90, f"an answer to interaction {sent.id}")

    answers = {k: final_text(s) for k, s in
               {"valid": valid, "corrupt": corrupt, "oversized": oversized, "denied": denied}.items()}  # fmt: skip
    log.info("register answers: %s", answers)
    assert "Registered **Reader**" in answers["valid"][0]
    assert "not a sound file" in answers["corrupt"][0]
    assert "limit" in answers["oversized"][0]
    assert "manage guild" in answers["denied"][0].lower()
    assert all(ephemeral for _, ephemeral in answers.values()), answers
    assert not oversized.deferred and not denied.deferred  # refused before any work
    names = [v.name for v in await narrator.bot.services.library.list(GUILD, ADMIN)]
    assert names == ["Reader"]


# 4 ---------------------------------------------------------------------------------------------------------------------
async def test_stop_mid_stream_is_silent_within_200_ms_and_the_next_say_works(narrator: Narrator) -> None:
    fake = narrator.fake
    sent = await narrator.say(LONG_LINE)
    await wait_until(lambda: sum(p.audible for p in packets_since(fake, GUILD, sent.sent_at)) >= 25, 90, "audio")
    speech = np.median([p.rms for p in packets_since(fake, GUILD, sent.sent_at) if p.audible])
    stop = await fake.command(GUILD, ADMIN, "stop")
    await asyncio.sleep(1.0)
    after_stop = packets_since(fake, GUILD, stop.sent_at)
    log.info("/stop: decoded RMS after the command (ms, RMS): %s (speech %.0f)",
             [(round((p.at - stop.sent_at) * 1000), round(p.rms)) for p in after_stop[:12]], speech)  # fmt: skip
    # The bot's source is silent at once, but the CELT decoder lets the level decay by about 3 dB per 20 ms frame
    # after an abrupt cut, so "stopped" means 30 dB below the speech level; 400 ms later nothing is audible at all.
    loud = [round((p.at - stop.sent_at) * 1000) for p in after_stop if p.rms > speech * 10 ** (-30 / 20)]
    assert max(loud, default=0) <= 200, loud
    assert not [p for p in after_stop if p.audible and p.at > stop.sent_at + 0.4]
    await wait_until(stop.answered, 10, "the /stop answer")
    assert "Stopped" in stop.texts[0]

    after = time.monotonic()
    again = await narrator.say("[Excited] Again!")
    await wait_for_master(again)
    await wait_until(lambda: any(p.audible for p in packets_since(fake, GUILD, after)), 30, "the next /say's audio")


# 5 ---------------------------------------------------------------------------------------------------------------------
async def test_three_guilds_at_once_are_heard_together_each_as_rendered_alone(narrator: Narrator) -> None:
    fake = narrator.fake
    lines = {GUILD: (ADMIN, "[Calm] First guild."), GUILD2: (OTHER, "[Excited] Second guild!"),
             GUILD3: (THIRD, "[Whispering] Third guild.")}  # fmt: skip
    sent = {guild: await narrator.say(script, guild=guild, user=user) for guild, (user, script) in lines.items()}
    together = {guild: (await wait_for_master(s, timeout=150))[0] for guild, s in sent.items()}
    streams = {}
    for guild, interaction in sent.items():
        await wait_for_quiet(fake, guild)
        stream = streams[guild] = audible_span(packets_since(fake, guild, interaction.sent_at))
        assert stream, f"guild {guild} heard nothing"
        log.info("guild %s: audio from %.2f s to %.2f s after its /say", guild, stream[0].at - interaction.sent_at,
                 stream[-1].at - interaction.sent_at)  # fmt: skip
        assert_steady(stream, f"guild {guild}")
    # all three at the same time (rows of one batch): no guild waited for another's render to end
    assert max(s[0].at for s in streams.values()) < min(s[-1].at for s in streams.values()), "not heard together"
    ssrcs = [{p.ssrc for p in fake.udp.guild_packets(guild)} for guild in lines]
    assert all(a.isdisjoint(b) for i, a in enumerate(ssrcs) for b in ssrcs[i + 1 :])
    # each master is the one its request makes alone: sharing the batch changed nothing (same seed, own row)
    for guild, (user, script) in lines.items():
        alone, _, _ = await wait_for_master(await narrator.say(script, guild=guild, user=user), timeout=120)
        assert len(alone) == len(together[guild]), (guild, len(alone), len(together[guild]))
        assert np.max(np.abs(alone - together[guild])) <= 4 / 32768, guild  # 16-bit masters: a rounding step apart


# 6 ---------------------------------------------------------------------------------------------------------------------
BAD_SCRIPTS = {
    "[Calm hello": "never closed",
    "[] hello": "empty tag",
    "[Pause 99s] hello": "too long",
    "[Calm] [Pause 1s]": "nothing to say",
    "[@Nobody] hello": "no voice called",
    "a" * 2100: "limit",
}


async def test_malformed_scripts_and_unknown_voices_get_ephemeral_errors_and_nothing_is_queued(
    narrator: Narrator,
) -> None:
    fake = narrator.fake
    sent = {script: await narrator.say(script) for script in BAD_SCRIPTS}
    unknown = await narrator.say("hello", voice="Nobody")
    for interaction in [*sent.values(), unknown]:
        await wait_until(interaction.answered, 20, f"an answer to interaction {interaction.id}")

    for script, expected in BAD_SCRIPTS.items():
        text, ephemeral = final_text(sent[script])
        assert expected in text and ephemeral and not sent[script].deferred, (script[:20], text)
    text, ephemeral = final_text(unknown)
    assert "no voice called `nobody`" in text.lower() and ephemeral and not unknown.deferred, text
    assert narrator.render_statuses() == []
    assert not narrator.bot.services.queue.service_order()
    assert fake.bot_voice_channel(GUILD) is None and not fake.udp.guild_packets(GUILD)


# PostgreSQL --------------------------------------------------------------------------------------------------------
@db_backends.needs_postgres
async def test_on_postgresql_a_registered_voice_is_heard_recorded_and_posted(pg_narrator: Narrator) -> None:
    """Scenarios 1 and 2 in short with the bot's database on PostgreSQL: a voice registered, a /say in it heard in
    voice, its master posted and its render row done. The rows are read with asyncpg, not the bot's engine."""
    narrator, url = pg_narrator, pg_narrator.settings.database_url
    registered = await register(narrator, "Reader", "reader.wav", reference_clip())
    await wait_until(registered.answered, 90, "the registration")
    assert "Registered **Reader**" in final_text(registered)[0]

    sent = await narrator.say("[Calm] Hello from the other database.", voice="Reader")
    _, _, name = await wait_for_master(sent)
    await wait_for_quiet(narrator.fake, GUILD)
    assert audible_span(packets_since(narrator.fake, GUILD, sent.sent_at)), "nothing was heard in the voice channel"

    ((voice_id,),) = await db_backends.rows(url, "SELECT id FROM voices WHERE name = 'Reader'")
    assert list(sidecar(narrator.settings, name)["identities"]) == [f"voice-{voice_id}"]
    ((user, status, used, output),) = await db_backends.rows(
        url, "SELECT user_id, status, voice_id, output_path FROM renders"
    )
    assert (user, status, used) == (ADMIN, "done", voice_id)
    assert Path(output).stem == Path(name).stem  # the row names the master that was posted
