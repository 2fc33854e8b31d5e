"""`narrator invite-url`: the link that adds this bot to a server, with exactly the permissions it needs.

The application id of a bot is its user id, and the first dot-separated segment of a bot token is that id in base64,
so the link can be printed offline from DISCORD_TOKEN (or from `--application-id`).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import sys

from bot.settings import Settings

log = logging.getLogger(__name__)

WHERE_THE_ID_IS = "Developer Portal → Applications → your app → General Information → Application ID"


class InviteError(ValueError):
    """No application id could be found; the message says where to get one."""


def application_id_from_token(token: str) -> int:
    """The bot's user id (= its application id), decoded from the token's first segment; InviteError if it is not."""
    first = token.strip().split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.isdigit():
        raise InviteError(
            f"DISCORD_TOKEN does not look like a bot token (its first part is not a base64 id); pass "
            f"--application-id ID ({WHERE_THE_ID_IS})"
        )
    return int(decoded)


def application_id(args: argparse.Namespace, settings: Settings) -> int:
    if args.application_id:
        if not str(args.application_id).isdigit():
            raise InviteError(f"--application-id must be a number ({WHERE_THE_ID_IS}), not {args.application_id!r}")
        return int(args.application_id)
    if not settings.discord_token:
        raise InviteError(f"DISCORD_TOKEN is not set: set it, or pass --application-id ID ({WHERE_THE_ID_IS})")
    return application_id_from_token(settings.discord_token)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from bot.invite import invite_url

    try:
        app_id = application_id(args, settings)
    except InviteError as exc:
        sys.stderr.write(f"narrator invite-url: {exc}\n")
        return 2
    sys.stdout.write(invite_url(app_id) + "\n")
    return 0
