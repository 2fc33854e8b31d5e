"""The roles of the member whose command is being served, for the length of that command.

The cog sets them (`with acting_roles(ids):`) around the service call; the voice library reads them (`current_roles`)
to honour a voice's role restriction where the say service resolves `[@name]` voices without passing roles along.
A context variable, so concurrent commands never see each other's roles. Unset (e.g. the operator's CLI): no roles.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator

_acting_roles: contextvars.ContextVar[frozenset[int] | None] = contextvars.ContextVar("acting_roles", default=None)


@contextlib.contextmanager
def acting_roles(role_ids: Iterable[int]) -> Iterator[None]:
    token = _acting_roles.set(frozenset(role_ids))
    try:
        yield
    finally:
        _acting_roles.reset(token)


def current_roles() -> frozenset[int]:
    return _acting_roles.get() or frozenset()
