"""Inbound claims: each activity Teams delivers takes effect once, however often (or however fast) it comes again.

A delivery claims its activity for a short lease before any effect and marks the claim finished after it. A
redelivery of a finished or running activity has no effect (an invoke gets the first answer); a redelivery after
the lease ran out without a finish (the process died mid-turn) takes the claim over and runs, so a crash never
loses a delivery.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

# Longer than any turn runs (Teams stops waiting after 15 s), short enough that Teams' own retry finds it expired.
CLAIM_LEASE = dt.timedelta(seconds=60)
CLAIM_LIFETIME = dt.timedelta(days=1)  # Teams does not redeliver after this


@dataclass(frozen=True)
class InvokeAnswer:
    """What the first delivery of an invoke answered: an HTTP status and a JSON body (or none)."""

    status: int
    body: Any


def claim_key(channel_id: str, conversation_id: str, activity_id: str) -> str:
    """A fixed-size key for (channel, conversation, activity id), whatever the ids' lengths."""
    joined = "\x1f".join((channel_id, conversation_id, activity_id))
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
