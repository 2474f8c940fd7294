"""A request's slot on a backend as a lease object (SPEC §7.2 capacity and load figures).

`DirectorRuntime.take_slot()` counts the slot in (load current/max/total) and returns a
`Slot`; whoever holds it gives it back with `release()`, which is idempotent, so every
exit path may call it. When the client goes away and the upstream exchange goes on in the
background (on_client_abort notify/ignore), `transfer()` hands the same lease to that
finisher: the request still counts once, and the slot is free only when the finisher ends.
"""
from __future__ import annotations


class Slot:
    __slots__ = ("director", "backend", "_held", "token")

    def __init__(self, director, backend):
        self.director = director
        self.backend = backend
        self._held = True
        self.token = None  # a proxy.buckets.Token, given back with the slot

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Give the slot back (to the oldest waiter that can use it). Idempotent."""
        if self._held:
            self._held = False
            self.director.free_slot(self.backend)
            if self.token is not None:
                self.token.give_back()

    def transfer(self) -> Slot:
        """A new lease owning this slot; this one no longer does (its release() is a no-op)."""
        if not self._held:
            raise RuntimeError("transfer of a slot already released or transferred")
        self._held = False
        slot = Slot(self.director, self.backend)
        slot.token = self.token
        return slot

    def __repr__(self) -> str:
        return f"<slot {self.backend!r}{'' if self._held else ' released'}>"
