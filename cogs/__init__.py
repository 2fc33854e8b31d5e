"""Discord glue: each cog parses options, checks permissions, calls a service in `bot/` and formats the reply."""
