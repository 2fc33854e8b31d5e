"""Import shim for the official ``qwen_tts`` 0.1.1 package inside ``.venv-oracle``.

Runs only in the oracle venv (never imported by our own package). Importing the official package pulls in the 25 Hz
tokenizer, whose module level imports ``sox``, ``onnxruntime`` and ``torchaudio.compliance.kaldi``; none of them is
called on the 12 Hz path we compare against. We install empty stand-ins for the ones that are missing or broken, then
import the package with stdout silenced (its whisper encoder prints a flash-attn notice to stdout at import, which
would corrupt the runner's JSON protocol).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import io
import logging
import sys
import types

log = logging.getLogger(__name__)

_STUBBED = ("sox", "onnxruntime", "torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi")


def _importable(name: str) -> bool:
    """True when ``name`` imports cleanly; a broken install (torchaudio 2.11 next to torch 2.13) counts as missing."""
    try:
        importlib.import_module(name)
    except Exception:  # any failure means "stub it"; OSError from a bad .so is the usual one
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return False
    return True


def _stub(name: str) -> types.ModuleType:
    """An empty module with a real ModuleSpec, so ``importlib.util.find_spec(name)`` keeps working."""
    module = types.ModuleType(name)
    is_package = name in ("torchaudio", "torchaudio.compliance")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=is_package)
    if is_package:
        module.__path__ = []
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def install_stubs() -> list[str]:
    """Stub the 25 Hz-only dependencies that do not import; returns the names stubbed."""
    # transformers first: its is_torchaudio_available() is computed once and must see the real (absent) torchaudio.
    importlib.import_module("transformers")
    stubbed: list[str] = []
    for top in ("sox", "onnxruntime"):
        if top not in sys.modules and not _importable(top):
            _stub(top)
            stubbed.append(top)
    if not _importable("torchaudio.compliance.kaldi"):
        for name in _STUBBED[2:]:
            _stub(name)
        stubbed.extend(_STUBBED[2:])
    return stubbed


def import_official() -> types.ModuleType:
    """Import and return the official ``qwen_tts`` package (stubs installed, import-time stdout swallowed)."""
    if "qwen_tts" in sys.modules and hasattr(sys.modules["qwen_tts"], "Qwen3TTSModel"):
        return sys.modules["qwen_tts"]
    stubbed = install_stubs()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        module = importlib.import_module("qwen_tts")
    if "site-packages" not in (module.__file__ or ""):
        # The repo root on sys.path would shadow the official package with ours: a silent self-comparison.
        raise ImportError(f"qwen_tts resolved to {module.__file__}, not the official package; run with python -P")
    log.debug("official qwen_tts imported from %s (stubbed: %s)", module.__file__, stubbed)
    return module
