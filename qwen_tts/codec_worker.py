"""The batching engine's audio side: one thread that turns code chunks of many streams into audio, batched.

The scheduler hands over ``(stream, codes or None, final, discard)`` jobs in each stream's order; the worker takes
every job that is waiting, decodes the first job of each stream in one ``MultiStreamDecoder.push`` (streams whose
chunks line up share a batch), delivers the audio to each ``Stream`` and, after a stream's final job, its end.
Running beside the scheduler lets the next decode step overlap the codec on a multi-core or GPU machine.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass

import torch

from qwen_tts.codec.multistream import MultiStreamDecoder
from qwen_tts.sequence import END, Stream

log = logging.getLogger(__name__)


@dataclass
class AudioJob:
    stream: Stream
    audio_id: int
    codes: torch.Tensor | None  # (n, 16), None for an end marker only
    final: bool = False
    discard: bool = False  # reference frames of in-context cloning: prime the decoder, drop their audio


class CodecWorker:
    def __init__(self, decoder: MultiStreamDecoder, name: str = "qwen-tts-codec"):
        self.decoder = decoder
        self._jobs: queue.Queue = queue.Queue()
        self._backlog: deque[AudioJob] = deque()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def open(self) -> int:
        return self.decoder.open()

    def submit(self, job: AudioJob) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping or self._backlog:
            if not self._backlog:
                job = self._jobs.get()
                if job is None:
                    break
                self._backlog.append(job)
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                else:
                    self._backlog.append(job)
            self._round()

    def _round(self) -> None:
        """Decode the first waiting job of every stream as one push; later jobs of a stream wait their turn."""
        now: dict[int, AudioJob] = {}
        later: deque[AudioJob] = deque()
        for job in self._backlog:
            if job.audio_id in now:
                later.append(job)
            else:
                now[job.audio_id] = job
        self._backlog = later
        live = {i: j for i, j in now.items() if not j.stream.cancelled}
        for i in now:
            if i not in live:
                self.decoder.close(i)
        chunks = {i: j.codes for i, j in live.items() if j.codes is not None}
        try:
            audio = self.decoder.push(chunks) if chunks else {}
        except Exception as exc:  # a codec failure ends these streams with the error, the worker keeps serving
            log.exception("codec decode failed for %d streams", len(chunks))
            for i, job in live.items():
                job.stream.put(RuntimeError(f"audio decoding failed: {exc}"))
                self.decoder.close(i)
            return
        for i, job in live.items():
            if i in audio and not job.discard:
                job.stream.put(audio[i].detach().float().cpu().numpy())
            if job.final:
                job.stream.put(END)
                self.decoder.close(i)
