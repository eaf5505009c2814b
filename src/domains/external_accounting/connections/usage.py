"""What a connection's Xero calls cost, counted in memory and added to `connection_usage` inside
transactions that happen anyway (each stored page, a run's finish): Xero meters API egress per
month, and a write per call would double the database's work for a number nobody reads live."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

from src.core.database import utcnow


@dataclass(frozen=True)
class UsageDelta:
    """Calls and response bytes of one connection on one UTC day, not yet stored."""

    connection_id: uuid.UUID
    day: date
    calls: int
    bytes: int


@dataclass
class UsageTally:
    """Calls counted since the last `drain`, per connection and UTC day (a run crossing
    midnight adds to both days)."""

    pending: dict[tuple[uuid.UUID, date], list[int]] = field(default_factory=dict)

    def note(self, connection_id: uuid.UUID, response_bytes: int) -> None:
        """One call answered, with `response_bytes` on the wire."""
        counts = self.pending.setdefault((connection_id, utcnow().date()), [0, 0])
        counts[0] += 1
        counts[1] += response_bytes

    def drain(self) -> list[UsageDelta]:
        """Everything counted so far, forgotten here (the caller stores it)."""
        deltas = [
            UsageDelta(connection_id, day, calls, size)
            for (connection_id, day), (calls, size) in sorted(self.pending.items())
        ]
        self.pending.clear()
        return deltas

    def restore(self, deltas: list[UsageDelta]) -> None:
        """Count again what a `drain` took but a rolled-back transaction did not store."""
        for delta in deltas:
            counts = self.pending.setdefault((delta.connection_id, delta.day), [0, 0])
            counts[0] += delta.calls
            counts[1] += delta.bytes
