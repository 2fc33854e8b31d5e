"""Voice UDP: IP discovery, then RTP receive -> transport decryption -> Opus decoding, per guild, with arrival times.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS, converted to time.monotonic()), and the socket is
read by its own thread, so packet timing measures what the bot put on the wire, not how busy the test process was.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass

import discord.opus
import nacl.secret
import numpy as np

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"  # discord.py's end-of-speech frame
DISCOVERY_SIZE = 74
SAMPLES_PER_PACKET = 960  # 20 ms at 48 kHz, per channel
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; the module may not export it
AUDIBLE_RMS = 100.0  # int16 RMS above which a decoded 20 ms frame counts as audio (the bot sends true zeros as silence)


@dataclass(frozen=True)
class Packet:
    """One RTP packet as received: `at` = time.monotonic() on arrival (s); `pcm` = decoded 48 kHz stereo int16 (960, 2)."""

    at: float
    guild_id: int
    ssrc: int
    sequence: int
    timestamp: int
    opus: bytes
    pcm: np.ndarray
    rms: float  # of `pcm`, computed once on arrival (tests poll `audible` often)

    @property
    def is_end_of_speech(self) -> bool:
        return self.opus == OPUS_SILENCE

    @property
    def audible(self) -> bool:
        return not self.is_end_of_speech and self.rms > AUDIBLE_RMS


def rtp_payload_bounds(packet: bytes) -> int:
    """Length of the unencrypted RTP header under the rtpsize rule: 12 + 4*CC, + 4 when the X bit is set."""
    cc = packet[0] & 0x0F
    extension = bool(packet[0] & 0x10)
    return 12 + 4 * cc + (4 if extension else 0)


def decrypt_xchacha_rtpsize(key: bytes, packet: bytes) -> bytes:
    """aead_xchacha20_poly1305_rtpsize: AAD = the header, nonce = last 4 bytes + 20 zeros. Returns the Opus frame.

    When X is set, the extension body sits at the start of the decrypted data and is stripped here.
    """
    header_len = rtp_payload_bounds(packet)
    plain = nacl.secret.Aead(key).decrypt(packet[header_len:-4], packet[:header_len], packet[-4:] + b"\0" * 20)
    if packet[0] & 0x10:
        words = struct.unpack(">H", packet[header_len - 2 : header_len])[0]
        plain = plain[4 * words :]
    return plain


@dataclass
class _Session:
    guild_id: int
    key: bytes | None
    decoder: discord.opus.Decoder


class VoiceUdp:
    """The fake's voice UDP server on 127.0.0.1 (one socket for every guild, told apart by SSRC)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.kernel_timestamps = True
        except OSError:  # not Linux: fall back to the time the thread woke up
            self.kernel_timestamps = False
        self.port: int = self.sock.getsockname()[1]
        self.packets: list[Packet] = []
        self.sessions: dict[int, _Session] = {}  # ssrc -> session
        self.errors: list[str] = []
        self.silent = False  # fault: the voice server stops answering IP discovery
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="fake-voice-udp", daemon=True)
        self._thread.start()

    def register(self, ssrc: int, guild_id: int) -> None:
        with self._lock:
            self.sessions[ssrc] = _Session(guild_id, None, discord.opus.Decoder())

    def set_key(self, ssrc: int, key: bytes) -> None:
        with self._lock:
            self.sessions[ssrc].key = key

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self.sock.close()

    def _serve(self) -> None:
        while self._running:
            try:
                data, ancillary, _, addr = self.sock.recvmsg(4096, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            at = self._arrival(ancillary)
            try:
                self._handle(data, addr, at)
            except Exception as exc:  # keep serving; the test reads `errors`
                log.exception("fake voice UDP could not handle a %d-byte datagram", len(data))
                self.errors.append(repr(exc))

    @staticmethod
    def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
        """The kernel's receive time of the datagram on the time.monotonic() clock (now, without a timestamp)."""
        now_mono, now_wall = time.monotonic(), time.time()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                return now_mono - (now_wall - (seconds + nanoseconds * 1e-9))
        return now_mono

    def _handle(self, data: bytes, addr: tuple[str, int], at: float) -> None:
        if len(data) == DISCOVERY_SIZE and data[:2] == b"\x00\x01":
            if not self.silent:
                ssrc = struct.unpack(">I", data[4:8])[0]
                reply = (
                    struct.pack(">HHI", 2, 70, ssrc) + addr[0].encode().ljust(64, b"\0") + struct.pack(">H", addr[1])
                )
                self.sock.sendto(reply, addr)
            return
        if len(data) < 12 + 16 + 4 or data[0] >> 6 != 2:
            self.errors.append(f"not an RTP packet: {data[:16].hex()}")
            return
        sequence, timestamp, ssrc = struct.unpack(">HII", data[2:12])
        with self._lock:
            session = self.sessions.get(ssrc)
        if session is None or session.key is None:
            self.errors.append(f"RTP for unknown SSRC {ssrc} or before SESSION_DESCRIPTION")
            return
        opus = decrypt_xchacha_rtpsize(session.key, data)
        pcm = np.frombuffer(session.decoder.decode(opus, fec=False), dtype="<i2").reshape(-1, 2)
        rms = float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0
        packet = Packet(at, session.guild_id, ssrc, sequence, timestamp, opus, pcm, rms)
        with self._lock:
            self.packets.append(packet)

    def guild_packets(self, guild_id: int, since: float = 0.0) -> list[Packet]:
        with self._lock:
            return [p for p in self.packets if p.guild_id == guild_id and p.at >= since]
