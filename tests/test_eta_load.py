"""Smart ETA under load: a render predicted while others share the engine is predicted at that load.

The engine is the scripted stand-in for a device whose streams share its compute (each of N streams runs N times
slower), driven through the real Narrator and Production from several threads at once, as batched rows are.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.narration.identity import Identity
from bot.narration.narrator import Narrator
from bot.narration.script import parse_script
from tests.scripted_engine import ScriptedEngine

LINE = "The lighthouse keeper counted the ships until the fog came in."
ROWS = 4


def _narrator(tmp_path) -> Narrator:
    engine = ScriptedEngine(compute_per_audio_s=0.05, shared_compute=True)
    engine.capabilities = dataclasses.replace(engine.capabilities, max_streams=ROWS)

    async def on_threads(fn, *args):  # one compute thread per row, as a batched engine serves them
        return await asyncio.to_thread(fn, *args)

    return Narrator(engine, outputs_dir=None, compute=on_threads, eta_path=tmp_path / "eta.json")


async def _render(narrator: Narrator) -> None:
    voices = {None: Identity("Aiden", "preset", narrator.engine.custom_voice_model, speaker="aiden")}
    async for _ in narrator.render(parse_script(LINE), voices, keep_master=False):
        pass


@pytest.mark.asyncio
async def test_a_render_predicted_beside_a_full_batch_is_predicted_at_that_load(tmp_path) -> None:
    narrator = _narrator(tmp_path)
    script = parse_script(LINE)
    await _render(narrator)  # measured alone
    alone = narrator.predict_seconds(script)
    await asyncio.gather(*(_render(narrator) for _ in range(ROWS)))  # measured at a full batch
    assert narrator.predict_seconds(script) == pytest.approx(alone, rel=0.2)  # idle again: the speed alone
    busy = [asyncio.ensure_future(_render(narrator)) for _ in range(ROWS - 1)]
    await asyncio.sleep(0.3)  # the three are rendering: a fourth would make a full batch
    beside_them = narrator.predict_seconds(script)
    await asyncio.gather(*busy)
    # Each of 4 streams runs 4x slower here; an ETA that ignored the load would tell the fourth user "as fast as alone".
    assert beside_them > 2.5 * alone, (beside_them, alone)
