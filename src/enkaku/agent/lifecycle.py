"""The agent session's states and the moves between them, timed by an injected clock.

::

    pairing ──► handshake ──► consent ──► active ◄──► paused
       │            │            │          │           │
       └────────────┴────────────┴──────────┴───────────┴──► ending ──► ended

``paused`` is an active session whose remote control the customer paused; the screen
and the other granted services go on. Any state but ``ended`` may move to ``ending``.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Callable


class State(enum.Enum):
    PAIRING = "pairing"
    HANDSHAKE = "handshake"
    CONSENT = "consent"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDING = "ending"
    ENDED = "ended"


_S = State
MOVES: dict[State, frozenset[State]] = {
    _S.PAIRING: frozenset({_S.HANDSHAKE, _S.ENDING}),
    _S.HANDSHAKE: frozenset({_S.CONSENT, _S.ENDING}),
    _S.CONSENT: frozenset({_S.ACTIVE, _S.ENDING}),
    _S.ACTIVE: frozenset({_S.PAUSED, _S.ENDING}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.ENDING}),
    _S.ENDING: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}


class InvalidMove(RuntimeError):
    pass


class Lifecycle:
    """The current state, when each state was entered, and who wants to know."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.state = State.PAIRING
        self.history: list[tuple[State, float]] = [(State.PAIRING, clock())]
        self._listeners: list[Callable[[State], None]] = []

    def listen(self, callback: Callable[[State], None]) -> None:
        self._listeners.append(callback)

    def move(self, new: State) -> None:
        if new not in MOVES[self.state]:
            raise InvalidMove(f"{self.state.value} -> {new.value}")
        self.state = new
        self.history.append((new, self.clock()))
        for callback in self._listeners:
            callback(new)

    def end(self) -> None:
        """Move to ``ending`` unless already there (idempotent)."""
        if self.state not in (State.ENDING, State.ENDED):
            self.move(State.ENDING)

    @property
    def is_live(self) -> bool:
        """Active or paused: the customer allowed the session and it has not ended."""
        return self.state in (State.ACTIVE, State.PAUSED)

    def seconds_in(self, *states: State) -> float:
        """Time spent in ``states`` so far (the current one counts up to now)."""
        total = 0.0
        marks = [*self.history, (None, self.clock())]
        for (state, start), (_, end) in itertools.pairwise(marks):
            if state in states:
                total += end - start
        return total
