"""Supervised fine-tuning: a speaker's recordings in, a CustomVoice checkpoint with a new speaker out."""
