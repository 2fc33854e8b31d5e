"""Fixtures for parity tests: the official-package oracle (``.venv-oracle``) and tiny codec checkpoints.

The tiny model checkpoints (``tiny_custom_voice``, ``tiny_voice_design``, ``tiny_base``) come from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.oracle.client import Oracle


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """The official qwen-tts 0.1.1 oracle; builds .venv-oracle on first use if ./install.sh --dev has not."""
    return Oracle.ensure(tmp_path_factory.mktemp("oracle"))


@pytest.fixture(scope="session")
def tiny_codec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ``speech_tokenizer/`` folder written by our own writer (both sides load it)."""
    from qwen_tts.codec.tiny import write_tiny_codec

    return write_tiny_codec(tmp_path_factory.mktemp("tiny_codec") / "speech_tokenizer", seed=7)
