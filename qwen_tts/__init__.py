"""Our own implementation of Qwen3-TTS 12 Hz: checkpoint in, codes and 24 kHz audio out.

This package knows nothing of Discord, the database or the bot.
"""
