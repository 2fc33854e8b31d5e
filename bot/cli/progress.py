"""Progress of one `narrator render`: a bar on a terminal (log lines otherwise) with one ETA for the whole command.

The clock starts when the command does, so loading checkpoints and designing or cloning a voice count in the
elapsed time and in the final "in N s". Before the render runs, the ETA is what the set-up took last time here (for
this kind of render, model and device) minus what it has taken so far, plus the predicted render time; during the
render it is the render's own ETA (production's, refined as frames arrive). tqdm's own remaining-time field is left
out of the bar, so exactly one ETA is shown. Segments count speech only; pauses cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator

from bot.narration.eta import eta_key
from bot.narration.script import Script

log = logging.getLogger(__name__)

TICK_S = 0.5  # how often a stage without events of its own (loading, designing) refreshes the bar
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} segments [{postfix}]"  # no {remaining}


class CommandProgress:
    def __init__(self, narrator, script: Script, mode: str) -> None:
        self.narrator = narrator
        self.script = script
        self.started = time.perf_counter()
        self.setup_key = f"setup|{mode}|{eta_key(narrator.engine.describe())}"
        self.setup_s: float | None = None  # measured once the render's first progress arrives
        self.audio_s = 0.0
        self.bar = _bar(len(script.speeches))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def predicted_eta_s(self) -> float | None:
        """Before the render: what is left of the usual set-up time, plus the predicted render."""
        usual = self.narrator.eta_store.rate(self.setup_key)
        render = self.narrator.predict_seconds(self.script)
        return render + max(0.0, (usual or 0.0) - self.elapsed_s())

    @contextlib.asynccontextmanager
    async def stage(self, name: str) -> AsyncIterator[None]:
        """A step with no progress events of its own: the bar names it and keeps its clock and ETA moving."""
        if self.bar is None:
            log.info("%s…", name)
            yield
            return
        self.bar.set_description_str(name)
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        while True:
            self._show(self.predicted_eta_s())
            await asyncio.sleep(TICK_S)

    async def render(self, script: Script, voices, max_frames: int | None):
        from bot.narration import AudioChunk, Finished, Progress

        if self.bar is not None:
            self.bar.set_description_str("rendering")
        finished = None
        rate = await asyncio.to_thread(lambda: self.narrator.engine.audio.sample_rate)  # loaded already
        async for event in self.narrator.render(script, voices, max_frames=max_frames):
            if isinstance(event, AudioChunk):
                self.audio_s += len(event.audio) / rate
            elif isinstance(event, Progress):
                self._first_progress()
                self._event(event)
            elif isinstance(event, Finished):
                finished = event
        if finished is not None and self.bar is not None:
            self.bar.n = self.bar.total
            self.bar.set_postfix_str(f"{finished.audio_seconds:.1f} s of audio in {self.elapsed_s():.1f} s")
        return finished

    def _first_progress(self) -> None:
        if self.setup_s is None:
            self.setup_s = self.elapsed_s()
            self.narrator.eta_store.update(self.setup_key, max(self.setup_s, 1e-3))

    def _event(self, event) -> None:
        if self.bar is None:
            eta = "?" if event.eta_s is None else f"{event.eta_s:.1f} s"
            log.info("segment %d of %d, %.1f s elapsed, %.1f s of audio, ETA %s", event.segment, event.total,
                     self.elapsed_s(), self.audio_s, eta)  # fmt: skip
            return
        self.bar.n = event.segment - 1
        self._show(event.eta_s)

    def _show(self, eta_s: float | None) -> None:
        if self.bar is None:
            return
        eta = "?" if eta_s is None else f"{eta_s:.1f} s"
        self.bar.set_postfix_str(f"{self.elapsed_s():.1f} s elapsed, ETA {eta}, {self.audio_s:.1f} s of audio")
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(total: int):
    if not sys.stderr.isatty():
        return None  # log lines instead: a bar in a log file is noise
    from tqdm import tqdm

    return tqdm(total=total, unit="seg", desc="starting", file=sys.stderr, leave=True, bar_format=BAR_FORMAT)
