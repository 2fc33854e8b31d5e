#!/usr/bin/env bash
# Placeholder replaced by the oracle work: builds .venv-oracle with the official qwen-tts package.
set -euo pipefail
