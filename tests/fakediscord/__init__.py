"""A fake Discord on 127.0.0.1 for end-to-end tests of the real bot (see `server.FakeDiscord`).

Layout: `payloads` (JSON builders), `tls` (a throwaway certificate), `voice` (UDP: IP discovery, RTP decryption,
Opus decoding per guild with arrival times), `server` (REST, gateway, voice gateway, fault injection), `messages`
(members' chat messages: create, edit, delete; privileged intents refused with 4014), `audio` (checks on received
audio: alignment, correlation, packet gaps), `harness` (discord.py base-URL overrides, starting a client, and
helpers to wait on the fake).
"""
