"""The README's operator sections say what the code does: invite permissions, sync syntax, checkpoints, tiny speakers."""

from __future__ import annotations

import re
from pathlib import Path

import discord

from bot.invite import REQUIRED_PERMISSIONS, SCOPES, invite_url, required_permissions

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER = "YOUR_APPLICATION_ID"
PORTAL_NAMES = {"view_channel": "View Channels"}  # where the portal's label is not the flag name in title case


def _section(heading: str) -> str:
    """The text under a README heading, up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", README[start:])]
    return README[start : start + ends[0]] if ends else README[start:]


def test_the_permission_integer_is_the_sum_of_the_listed_flags():
    bits = 0
    for name in REQUIRED_PERMISSIONS:
        bits |= getattr(discord.Permissions, name).flag  # a typo in the list is an AttributeError here
    assert required_permissions().value == bits
    assert bits & (discord.Permissions.connect.flag | discord.Permissions.speak.flag)


def test_readme_prints_the_invite_url_the_code_builds():
    url = invite_url(123456789).replace("client_id=123456789", f"client_id={PLACEHOLDER}")
    assert url in _section("### Invite the bot")
    assert f"permissions={required_permissions().value}" in url
    assert "scope=" + "+".join(SCOPES) in url and SCOPES == ("bot", "applications.commands")


def test_readme_permission_table_lists_exactly_the_required_permissions():
    rows = re.findall(r"^\| ([A-Z][A-Za-z ]+) \| ", _section("### Invite the bot"), flags=re.M)
    expected = {PORTAL_NAMES.get(n, n.replace("_", " ").title()) for n in REQUIRED_PERMISSIONS}
    assert set(rows) == expected


def test_every_permission_the_code_checks_is_asked_for():
    """A permission the bot checks for itself (`permissions.connect`, `bot_has_permissions(speak=...)`) must be in
    the invite, or a freshly invited bot fails that check."""
    flags = set(discord.Permissions.VALID_FLAGS)
    checked = set()
    for source in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("cogs/**/*.py")]:
        text = source.read_text(encoding="utf-8")
        # `interaction.permissions` are the member's (who may bind a channel), not the bot's: not in the invite.
        checked |= {m for m in re.findall(r"(?<!interaction\.)permissions\.(\w+)", text) if m in flags}
        for args in re.findall(r"bot_has_permissions\(([^)]*)\)", text):
            checked |= set(re.findall(r"(\w+)\s*=", args))
    assert checked, "no permission check found: the scan is broken"
    assert checked <= set(REQUIRED_PERMISSIONS)


def test_readme_sync_syntax_matches_the_owner_command():
    import inspect

    from cogs.admin import Admin

    assert Admin.sync.name == "sync"
    assert '"global"' in inspect.getsource(Admin.sync.callback)
    text = _section("### Make the slash commands appear (sync)")
    assert "`@YourBot sync`" in text and "`@YourBot sync global`" in text and "NARRATOR_DEV_GUILD_ID" in text


def test_readme_downloads_the_default_checkpoints_of_each_setting():
    from bot import settings

    text = _section("### Download the checkpoints")
    for default in (
        settings.DEFAULT_CUSTOM_VOICE_MODEL,
        settings.DEFAULT_BASE_MODEL,
        settings.DEFAULT_VOICE_DESIGN_MODEL,
    ):
        assert f"hf download {default} --local-dir" in text
    assert "huggingface-cli download" not in README


def test_two_minute_path_uses_speakers_a_tiny_checkpoint_has():
    from qwen_tts.tiny import SPEAKERS

    text = _section("### Try it in two minutes")
    used = re.findall(r"--speaker (\w+)", text)
    assert used and set(used) <= set(SPEAKERS)
    listed = re.findall(r"`(\w+)`", text.split("nine speakers:", 1)[1].split(".", 1)[0])
    assert listed == sorted(SPEAKERS)
    assert "python -m qwen_tts.tiny models/tiny-custom-voice --type custom_voice" in text
