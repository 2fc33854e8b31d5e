"""The narrator process: settings, launcher, services, inference worker and voice streaming."""
