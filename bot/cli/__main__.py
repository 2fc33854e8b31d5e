"""`python -m bot.cli` is the `narrator` command."""

from bot.cli import main

raise SystemExit(main())
