"""`narrator db upgrade|current`: apply the migrations or print the applied revision."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.settings import Settings
from db.engine import current, upgrade
from db.migrate import head_revision

log = logging.getLogger(__name__)


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "upgrade":
        upgrade(settings.database_url)
        sys.stdout.write(f"database at revision {current(settings.database_url)} (head {head_revision()})\n")
        return 0
    if args.db_command == "current":
        revision = current(settings.database_url)
        sys.stdout.write(f"{revision or 'empty (run `narrator db upgrade`)'} (head {head_revision()})\n")
        return 0
    sys.stderr.write(f"narrator db: unknown command {args.db_command!r}; use upgrade or current\n")
    return 2
