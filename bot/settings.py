"""Process settings, read once from the environment and an optional `.env` file.

Every variable is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_CUSTOM_VOICE_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"
DEFAULT_VOICE_DESIGN_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"
DEFAULT_BASE_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
# The drift guard's defaults (bot.narration.identity.DriftGuard has the same; a test keeps them in step).
DEFAULT_DRIFT_THRESHOLD = 0.5
DEFAULT_DRIFT_RETRIES = 2
DEFAULT_DRIFT_PROBE_SECONDS = 1.5
DTYPES = ("auto", "bfloat16", "float16", "float32")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says how to fix it."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_int(name: str, default: int | None) -> int | None:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _env_list(name: str) -> tuple[str, ...]:
    raw = _env(name, "") or ""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _env_shards(name: str) -> tuple[int, ...] | None:
    """`0,1,4-7` -> (0, 1, 4, 5, 6, 7); unset -> None."""
    raw = _env(name)
    if raw is None:
        return None
    shards: list[int] = []
    try:
        for part in raw.replace(" ", "").split(","):
            low, _, high = part.partition("-")
            shards.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise SettingsError(f"{name} must be shard numbers and ranges like 0,1 or 2-3, got {raw!r}") from None
    return tuple(shards)


def _env_ids(name: str) -> frozenset[int]:
    raw = _env(name, "") or ""
    try:
        return frozenset(int(part) for part in raw.replace(",", " ").split())
    except ValueError:
        raise SettingsError(f"{name} must be a comma-separated list of Discord ids, got {raw!r}") from None


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric setting, checked at start (`Settings.__post_init__`)."""

    env: str  # the variable, named in the error
    low: float
    high: float
    unit: str = ""  # shown after the range, e.g. "seconds"

    def check(self, value: object, integer: bool) -> None:
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        whole_ok = not integer or isinstance(value, int)
        if not (number_ok and whole_ok and self.low <= value <= self.high):  # NaN fails every comparison
            kind = "a whole number" if integer else "a number"
            unit = f" {self.unit}" if self.unit else ""
            raise SettingsError(f"{self.env} must be {kind} from {self.low:g} to {self.high:g}{unit}, got {value!r}")


def bounded(env: str, default: float, low: float, high: float, unit: str = ""):
    """A numeric setting with its range: one line per setting keeps the range next to the default."""
    return field(default=default, metadata={"bound": Bound(env, low, high, unit)})


def _bounded_from_env(cls: type) -> dict[str, float]:
    """Every range-checked setting whose variable is set: its `Bound` names the variable, its default the type."""
    values: dict[str, float] = {}
    for f in fields(cls):
        bound = f.metadata.get("bound")
        if bound is not None and _env(bound.env) is not None:
            read = _env_int if isinstance(f.default, int) else _env_float
            values[f.name] = read(bound.env, f.default)
    return values


@dataclass(frozen=True)
class Settings:
    discord_token: str | None = field(default=None, repr=False)  # a secret: never in repr() or a log
    custom_voice_model: str = DEFAULT_CUSTOM_VOICE_MODEL
    voice_design_model: str = DEFAULT_VOICE_DESIGN_MODEL
    base_model: str = DEFAULT_BASE_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    compile: bool = True  # GPU speed path (CUDA graphs); NARRATOR_COMPILE=0 is the kill switch
    data_dir: Path = Path("data")
    outputs_dir: Path = Path("outputs")
    log_dir: Path = Path("logs")
    database_url: str = ""
    dev_guild_id: int | None = None
    owner_ids: frozenset[int] = field(default_factory=frozenset)
    # Numeric limits: each is range-checked at start (a bad one stops `narrator run` with a one-line error).
    max_script_chars: int = bounded("NARRATOR_MAX_SCRIPT_CHARS", 2000, 20, 100_000, "characters")
    max_queued_per_user: int = bounded("NARRATOR_MAX_QUEUED_PER_USER", 3, 1, 1000, "jobs")
    max_queued_per_guild: int = bounded("NARRATOR_MAX_QUEUED_PER_GUILD", 50, 1, 100_000, "jobs")
    max_queued_total: int = bounded("NARRATOR_MAX_QUEUED_TOTAL", 1000, 1, 100_000, "jobs")
    job_timeout_s: float = bounded("NARRATOR_JOB_TIMEOUT_S", 600.0, 1, 86_400, "seconds")
    max_job_audio_s: float = bounded("NARRATOR_MAX_JOB_AUDIO_S", 300.0, 1, 3600, "seconds")  # frames, all attempts
    max_pause_total_s: float = bounded("NARRATOR_MAX_PAUSE_TOTAL_S", 30.0, 0, 600, "seconds")
    max_checkpoints_per_script: int = bounded("NARRATOR_MAX_CHECKPOINTS_PER_SCRIPT", 2, 1, 8, "checkpoints")
    max_reference_seconds: float = bounded("NARRATOR_MAX_REFERENCE_SECONDS", 60.0, 1, 600, "seconds")
    max_upload_bytes: int = bounded("NARRATOR_MAX_UPLOAD_BYTES", 25 * 1024 * 1024, 1024, 500 * 1024 * 1024, "bytes")
    # Renders served at once per engine (rows of the batched decode step); 0: sized from the device (see EngineOptions)
    max_batch: int = bounded("NARRATOR_MAX_BATCH", 0, 0, 64, "rows")
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD  # lock score (cosine) below which a segment is re-sampled
    drift_retries: int = DEFAULT_DRIFT_RETRIES  # extra attempts per segment at most
    drift_probe_seconds: float = DEFAULT_DRIFT_PROBE_SECONDS  # audio held back and scored before it is played
    # audio queued for one guild's voice before its render waits; the same summed over every guild of the process
    max_buffered_seconds: float = bounded("NARRATOR_MAX_BUFFERED_SECONDS", 30.0, 1, 3600, "seconds")
    max_buffered_seconds_total: float = bounded("NARRATOR_MAX_BUFFERED_SECONDS_TOTAL", 600.0, 1, 86400, "seconds")
    voice_idle_leave_s: float = bounded("NARRATOR_VOICE_IDLE_LEAVE_S", 600.0, 0, 86400, "seconds")  # 0 = stay
    # Trust and data lifecycle (README: "Consent and privacy").
    max_personal_voices: int = 5  # personal voices one member may have (every guild together)
    retention_days: float = 30.0  # masters, sidecars and render rows older than this are deleted
    outputs_max_bytes: int = 10 * 1024**3  # masters + sidecars beyond this are deleted, oldest first
    min_free_bytes: int = 512 * 1024**2  # renders are refused while the outputs disk has less free than this
    retention_interval_s: float = 3600.0  # how often the retention task runs
    stuck_step_s: float = 120.0  # a compute step with no progress for this long is abandoned (worker restarted)
    keep_guild_data: bool = False  # keep a guild's voices and clips after the bot is removed from it
    # Remote engines and shards (README "Deployment").
    engine_urls: tuple[str, ...] = ()  # speech servers to render on; empty: the local model
    engine_kind: str = "auto"  # auto | narrator | vllm-omni
    engine_api_key: str | None = None
    engine_timeout_s: float = 60.0  # longest silence inside one remote response
    remote_workers: int = 4  # renders this bot process runs at once on remote engines
    shard_count: int | None = None  # None: Discord's recommended count (AutoShardedBot)
    shard_ids: tuple[int, ...] | None = None  # the shards this process runs; None: all of them

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{self.data_dir / 'narrator.db'}")
        self._check_bounds()
        self._check_choices()
        self._check_drift_guard()
        self._check_lifecycle()
        self._check_remote()
        self._check_shards()

    def __repr__(self) -> str:  # the dataclass repr would show DATABASE_URL's password
        return f"Settings({', '.join(f'{k}={v}' for k, v in self.describe().items())})"

    def _check_lifecycle(self) -> None:
        # One place for the ranges of the lifecycle settings; a bad value stops `narrator run` with its variable.
        for env, value, low, high, unit in (
            ("NARRATOR_MAX_PERSONAL_VOICES", self.max_personal_voices, 0, 1000, "voices"),
            ("NARRATOR_RETENTION_DAYS", self.retention_days, 0.01, 36_500, "days"),
            ("NARRATOR_OUTPUTS_MAX_BYTES", self.outputs_max_bytes, 1024**2, 2**60, "bytes"),
            ("NARRATOR_MIN_FREE_BYTES", self.min_free_bytes, 0, 2**60, "bytes"),
            ("NARRATOR_RETENTION_INTERVAL_S", self.retention_interval_s, 1, 7 * 86_400, "seconds"),
            ("NARRATOR_STUCK_STEP_S", self.stuck_step_s, 1, 86_400, "seconds"),
        ):
            integer = unit in ("voices", "bytes")
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and (not integer or isinstance(value, int)) and low <= value <= high):
                kind = "a whole number" if integer else "a number"
                raise SettingsError(f"{env} must be {kind} from {low:g} to {high:g} {unit}, got {value!r}")

    def _check_remote(self) -> None:
        for url in self.engine_urls:
            if not url.startswith(("http://", "https://")) or len(url) > 500:
                raise SettingsError(f"NARRATOR_ENGINE_URLS must be http(s) URLs separated by commas, got {url!r}")
        if len(self.engine_urls) > 64:
            raise SettingsError(f"NARRATOR_ENGINE_URLS lists {len(self.engine_urls)} servers; at most 64")
        if self.engine_kind not in ("auto", "narrator", "vllm-omni"):
            raise SettingsError(f"NARRATOR_ENGINE_KIND must be auto, narrator or vllm-omni, got {self.engine_kind!r}")
        if not (math.isfinite(self.engine_timeout_s) and 1.0 <= self.engine_timeout_s <= 3600.0):
            raise SettingsError(f"NARRATOR_ENGINE_TIMEOUT_S must be 1-3600 seconds, got {self.engine_timeout_s!r}")
        if not 1 <= self.remote_workers <= 256:
            raise SettingsError(f"NARRATOR_REMOTE_WORKERS must be 1-256, got {self.remote_workers!r}")

    def _check_shards(self) -> None:
        if self.shard_count is not None and not 1 <= self.shard_count <= 4096:
            raise SettingsError(f"NARRATOR_SHARD_COUNT must be 1-4096, got {self.shard_count!r}")
        if self.shard_ids is None:
            return
        if self.shard_count is None:
            raise SettingsError("NARRATOR_SHARD_IDS needs NARRATOR_SHARD_COUNT (the total over all bot processes)")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad or not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
            raise SettingsError(
                f"NARRATOR_SHARD_IDS must be distinct shard numbers from 0 to {self.shard_count - 1} "
                f"(e.g. 0,1 or 2-3), got {list(self.shard_ids)}"
            )

    def _check_bounds(self) -> None:
        for f in fields(self):
            bound = f.metadata.get("bound")
            if bound is not None:
                bound.check(getattr(self, f.name), integer=isinstance(f.default, int))

    def _check_choices(self) -> None:
        if not _DEVICE.match(str(self.device)):
            raise SettingsError(f"NARRATOR_DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise SettingsError(f"NARRATOR_DTYPE must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.dev_guild_id is not None and not 0 < self.dev_guild_id < 2**64:
            raise SettingsError(
                f"NARRATOR_DEV_GUILD_ID must be a Discord id (a positive number), got {self.dev_guild_id}"
            )
        bad_owner = next((i for i in self.owner_ids if not 0 < i < 2**64), None)
        if bad_owner is not None:
            raise SettingsError(f"NARRATOR_OWNER_IDS must list Discord ids (positive numbers), got {bad_owner}")
        for env, value in (("NARRATOR_MODEL", self.custom_voice_model), ("NARRATOR_DESIGN_MODEL",
                           self.voice_design_model), ("NARRATOR_BASE_MODEL", self.base_model)):  # fmt: skip
            if not str(value).strip():
                raise SettingsError(f"{env} must name a checkpoint (a local folder or a hub id), got {value!r}")

    def _check_drift_guard(self) -> None:
        # Checked here, not only in DriftGuard, so a bad value stops `narrator run` at start with the variable's name.
        if not -1.0 <= self.drift_threshold <= 1.01:
            raise SettingsError(
                f"NARRATOR_DRIFT_THRESHOLD must be a cosine similarity between -1 and 1 (e.g. 0.5; -1 never "
                f"re-samples, 1.01 re-samples every guarded segment), got {self.drift_threshold!r}"
            )
        if isinstance(self.drift_retries, bool) or not isinstance(self.drift_retries, int) or self.drift_retries < 0:
            raise SettingsError(
                f"NARRATOR_DRIFT_RETRIES must be a whole number >= 0 (0 keeps the first attempt), got "
                f"{self.drift_retries!r}"
            )
        if not (math.isfinite(self.drift_probe_seconds) and self.drift_probe_seconds >= 0):
            raise SettingsError(
                f"NARRATOR_DRIFT_PROBE_SECONDS must be a number of seconds >= 0 (e.g. 1.5; 0 scores only whole "
                f"segments and never re-samples), got {self.drift_probe_seconds!r}"
            )

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = ".env") -> Settings:
        """Read the settings; values already in the environment win over the `.env` file."""
        if env_file is not None and Path(env_file).is_file():
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)
        data_dir = Path(_env("NARRATOR_DATA_DIR", "data"))
        return cls(
            discord_token=_env("DISCORD_TOKEN"),
            custom_voice_model=_env("NARRATOR_MODEL", DEFAULT_CUSTOM_VOICE_MODEL),
            voice_design_model=_env("NARRATOR_DESIGN_MODEL", DEFAULT_VOICE_DESIGN_MODEL),
            base_model=_env("NARRATOR_BASE_MODEL", DEFAULT_BASE_MODEL),
            device=_env("NARRATOR_DEVICE", "auto"),
            dtype=_env("NARRATOR_DTYPE", "auto"),
            compile=_env_bool("NARRATOR_COMPILE", True),
            data_dir=data_dir,
            outputs_dir=Path(_env("NARRATOR_OUTPUTS_DIR", "outputs")),
            log_dir=Path(_env("NARRATOR_LOG_DIR", "logs")),
            database_url=_env("DATABASE_URL", ""),
            dev_guild_id=_env_int("NARRATOR_DEV_GUILD_ID", None),
            owner_ids=_env_ids("NARRATOR_OWNER_IDS"),
            **_bounded_from_env(cls),
            drift_threshold=_env_float("NARRATOR_DRIFT_THRESHOLD", DEFAULT_DRIFT_THRESHOLD),
            drift_retries=_env_int("NARRATOR_DRIFT_RETRIES", DEFAULT_DRIFT_RETRIES),
            drift_probe_seconds=_env_float("NARRATOR_DRIFT_PROBE_SECONDS", DEFAULT_DRIFT_PROBE_SECONDS),
            **_lifecycle_from_env(),
            engine_urls=_env_list("NARRATOR_ENGINE_URLS"),
            engine_kind=_env("NARRATOR_ENGINE_KIND", "auto"),
            engine_api_key=_env("NARRATOR_ENGINE_API_KEY"),
            engine_timeout_s=_env_float("NARRATOR_ENGINE_TIMEOUT_S", 60.0),
            remote_workers=_env_int("NARRATOR_REMOTE_WORKERS", 4),
            shard_count=_env_int("NARRATOR_SHARD_COUNT", None),
            shard_ids=_env_shards("NARRATOR_SHARD_IDS"),
        )

    def drift_guard_options(self) -> dict[str, float | int]:
        """Keyword arguments of `bot.narration.DriftGuard` (NARRATOR_DRIFT_THRESHOLD / _RETRIES / _PROBE_SECONDS)."""
        return {
            "threshold": self.drift_threshold,
            "max_retries": self.drift_retries,
            "probe_seconds": self.drift_probe_seconds,
        }

    def require_token(self) -> str:
        if not self.discord_token:
            raise SettingsError(
                "DISCORD_TOKEN is not set: put `DISCORD_TOKEN=your-bot-token` in .env (see .env.example) "
                "or export it before `narrator run`."
            )
        return self.discord_token

    def describe(self) -> dict[str, str]:
        """The settings as strings for the start-up log: the token hidden, DATABASE_URL's password masked."""
        from db.engine import describe_url  # db imports nothing of bot; imported here so settings stay light

        shown = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        shown["discord_token"] = "<set>" if self.discord_token else "<missing>"
        shown["database_url"] = describe_url(self.database_url)
        shown["engine_api_key"] = "<set>" if self.engine_api_key else "<none>"
        return shown


def _lifecycle_from_env() -> dict[str, object]:
    defaults = Settings.__dataclass_fields__
    return {
        "max_personal_voices": _env_int("NARRATOR_MAX_PERSONAL_VOICES", defaults["max_personal_voices"].default),
        "retention_days": _env_float("NARRATOR_RETENTION_DAYS", defaults["retention_days"].default),
        "outputs_max_bytes": _env_int("NARRATOR_OUTPUTS_MAX_BYTES", defaults["outputs_max_bytes"].default),
        "min_free_bytes": _env_int("NARRATOR_MIN_FREE_BYTES", defaults["min_free_bytes"].default),
        "retention_interval_s": _env_float("NARRATOR_RETENTION_INTERVAL_S", defaults["retention_interval_s"].default),
        "stuck_step_s": _env_float("NARRATOR_STUCK_STEP_S", defaults["stuck_step_s"].default),
        "keep_guild_data": _env_bool("NARRATOR_KEEP_GUILD_DATA", defaults["keep_guild_data"].default),
    }
