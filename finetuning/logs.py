"""Training logs: a CSV row per logged optimizer step, optional TensorBoard, and a loss-curve PNG.

The PNG uses matplotlib when it is installed (the optional ``finetune`` extra); without it a small built-in plotter
writes a plain line chart (white background, grey axes box, one coloured line per loss, no text) with zlib only, so
a curve is always written next to the checkpoint.
"""

from __future__ import annotations

import csv
import logging
import struct
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

CSV_NAME = "train_log.csv"
PNG_NAME = "loss_curve.png"
COLUMNS = ("step", "epoch", "loss", "talker_loss", "sub_talker_loss", "grad_norm", "lr", "samples", "seconds")
CURVES = ("loss", "talker_loss", "sub_talker_loss")
_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))


class TrainingLog:
    """Appends rows to ``output_dir/train_log.csv`` (keeping only rows up to ``resume_step`` of an earlier run)."""

    def __init__(self, output_dir: str | Path, resume_step: int = 0, tensorboard: bool = False):
        self.path = Path(output_dir) / CSV_NAME
        self.rows: list[dict[str, float]] = []
        if resume_step and self.path.is_file():
            with self.path.open(encoding="utf-8", newline="") as f:
                self.rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
            self.rows = [r for r in self.rows if r["step"] <= resume_step]
        self._rewrite()
        self.writer = _tensorboard_writer(Path(output_dir)) if tensorboard else None

    def _rewrite(self) -> None:
        with self.path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows({k: _fmt(r[k]) for k in COLUMNS} for r in self.rows)

    def add(self, row: dict[str, float]) -> None:
        row = {k: float(row[k]) for k in COLUMNS}
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow({k: _fmt(row[k]) for k in COLUMNS})
        if self.writer is not None:
            for name in (*CURVES, "grad_norm", "lr"):
                self.writer.add_scalar(f"train/{name}", row[name], int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install -e '.[finetune]'); logging to CSV only")
        return None
    return SummaryWriter(str(folder / "tensorboard"))


def write_loss_curve(rows: list[dict[str, float]], path: str | Path) -> Path | None:
    """Plot loss, talker_loss and sub_talker_loss against step into ``path``; None (logged) if there are < 2 rows."""
    if len(rows) < 2:
        log.info("loss curve not written: fewer than 2 logged steps")
        return None
    path = Path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path.write_bytes(_simple_png([[r[c] for r in rows] for c in CURVES]))
        return path
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for name in CURVES:
        ax.plot(steps, [r[name] for r in rows], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _simple_png(series: list[list[float]], width: int = 640, height: int = 360, margin: int = 20) -> bytes:
    """RGB PNG of line series sharing one y range (no text: the CSV next to it has the numbers)."""
    pixels = bytearray(b"\xff" * (width * height * 3))

    def put(x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            i = (y * width + x) * 3
            pixels[i : i + 3] = bytes(colour)

    for x in range(margin, width - margin):
        put(x, margin, (160, 160, 160))
        put(x, height - margin, (160, 160, 160))
    for y in range(margin, height - margin + 1):
        put(margin, y, (160, 160, 160))
        put(width - margin, y, (160, 160, 160))
    lo = min(min(s) for s in series)
    hi = max(max(s) for s in series)
    span = (hi - lo) or 1.0
    for values, colour in zip(series, _COLOURS, strict=False):
        pts = [(margin + round(i * (width - 2 * margin) / (len(values) - 1)),
                height - margin - round((v - lo) / span * (height - 2 * margin))) for i, v in enumerate(values)]  # fmt: skip
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for t in range(n + 1):
                put(x0 + round((x1 - x0) * t / n), y0 + round((y1 - y0) * t / n), colour)
    raw = b"".join(b"\x00" + bytes(pixels[y * width * 3 : (y + 1) * width * 3]) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
