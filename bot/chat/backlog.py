"""A guild's reading queue for chat narration: which message renders next, which are dropped. Pure (no I/O).

Messages are read in the order they came. Each one goes WAITING -> RENDERING (its render job was submitted) ->
RENDERED (all its audio is queued in the guild's stream) and leaves once its audio has been heard. The policy:

- one render at a time per guild, and only `LOOKAHEAD` rendered messages may sit ahead of it: the next message
  renders while the current one plays, but audio is never produced far ahead of the listener (so an edit or a
  deletion of a message not yet spoken still counts, and `/stop` has little to throw away);
- at most `MAX_WAITING` messages wait (every message not being spoken counts); a new one beyond that drops the oldest
  waiting ones, never the one being spoken;
- a message deleted before it is spoken leaves the queue; one edited before it is spoken is read as edited (an item
  that already rendered goes back to WAITING at its place, to render again).

The service says which item is being spoken (`speaking`), since only the voice stream knows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_WAITING = 5
LOOKAHEAD = 1  # rendered messages allowed ahead of the one rendering (the one playing now)


class State(enum.Enum):
    WAITING = "waiting"
    RENDERING = "rendering"
    RENDERED = "rendered"


@dataclass(eq=False)
class Item:
    message_id: int
    payload: Any  # what the service needs to render it (the message, names); replaced by an edit
    state: State = State.WAITING
    job: Any = None  # the render job while RENDERING / RENDERED
    announce: bool | None = None  # the name announcement, decided once (a re-render after an edit keeps it)
    meta: dict[str, Any] = field(default_factory=dict)  # timings and facts for logs and measurements


class Backlog:
    def __init__(self, max_waiting: int = MAX_WAITING, lookahead: int = LOOKAHEAD) -> None:
        self.max_waiting, self.lookahead = max_waiting, lookahead
        self.items: list[Item] = []  # in arrival order

    def __len__(self) -> int:
        return len(self.items)

    def find(self, message_id: int) -> Item | None:
        return next((i for i in self.items if i.message_id == message_id), None)

    def add(self, item: Item, speaking: Callable[[Item], bool]) -> list[Item]:
        """Queue `item`; returns the items dropped to make room (oldest first), already removed."""
        self.items.append(item)
        dropped: list[Item] = []
        while True:
            waiting = [i for i in self.items if not speaking(i)]
            if len(waiting) <= self.max_waiting:
                return dropped
            oldest = waiting[0]
            self.items.remove(oldest)
            dropped.append(oldest)

    def next_to_render(self) -> Item | None:
        """The item to submit now, or None (a render is running, or enough audio is ready ahead of the listener)."""
        if any(i.state is State.RENDERING for i in self.items):
            return None
        if sum(1 for i in self.items if i.state is State.RENDERED) > self.lookahead:
            return None
        return next((i for i in self.items if i.state is State.WAITING), None)

    def remove(self, message_id: int) -> Item | None:
        item = self.find(message_id)
        if item is not None:
            self.items.remove(item)
        return item

    def edit(self, message_id: int, payload: Any, speaking: Callable[[Item], bool]) -> tuple[Item | None, bool]:
        """Apply an edit: (the item, whether its render must be redone). An item being spoken keeps what it says."""
        item = self.find(message_id)
        if item is None or speaking(item):
            return item, False
        item.payload = payload
        redo = item.state is not State.WAITING
        if redo:
            item.state, item.job = State.WAITING, None
        return item, redo

    def rendered(self, item: Item) -> None:
        if item in self.items:
            item.state = State.RENDERED

    def played(self, is_done: Callable[[Item], bool]) -> list[Item]:
        """Remove and return the rendered items whose audio has been heard."""
        done = [i for i in self.items if i.state is State.RENDERED and is_done(i)]
        for item in done:
            self.items.remove(item)
        return done

    def clear(self) -> list[Item]:
        items, self.items = self.items, []
        return items
