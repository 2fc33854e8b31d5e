"""The bot's invite link: the one list of Discord permissions it needs, and the OAuth2 URL that asks for them.

Each permission is there because code uses it (grep the reason before adding or removing one):

- ``view_channel``: see the voice channel to join and the text channel of chat narration.
- ``connect``, ``speak``: join the voice channel and play (checked by ``bot/voice/connections.py`` before joining).
- ``send_messages``: the owner ``sync`` reply, the "your render was interrupted" notice, and the master posted in the
  channel when the interaction followup fails (``bot/services/progress.py``, ``bot/services/say.py``).
- ``attach_files``: that channel post carries the master as a file.

Slash command replies (progress, errors, the master) go through the interaction webhook, which needs none of these.
No embeds are sent and no message history is read, so Embed Links and Read Message History are not asked for.
The README's "Set up the Discord bot" section prints the resulting integer; ``tests/test_operator_docs.py`` keeps
them in step.
"""

from __future__ import annotations

import discord

REQUIRED_PERMISSIONS: tuple[str, ...] = ("view_channel", "send_messages", "attach_files", "connect", "speak")
SCOPES: tuple[str, ...] = ("bot", "applications.commands")


def required_permissions() -> discord.Permissions:
    """``REQUIRED_PERMISSIONS`` as a ``discord.Permissions`` (its ``.value`` is the invite URL's integer)."""
    return discord.Permissions(**dict.fromkeys(REQUIRED_PERMISSIONS, True))


def invite_url(application_id: int | str) -> str:
    """The OAuth2 URL that adds the bot with its slash commands and exactly the permissions it needs."""
    return discord.utils.oauth_url(int(application_id), permissions=required_permissions(), scopes=SCOPES)
