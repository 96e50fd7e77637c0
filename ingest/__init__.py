"""Event schema v1 and the producer SDK applications use to publish events.

Importing ``ingest`` loads only the schema; the SDK (which needs aiokafka) is in
``ingest.producer``.

Exceptions::

    IngestError
     └── SchemaError    an event failed validation; ``.rejection`` says why
"""

from core.errors import LlmpulseError
from ingest.schema import Event, Feedback, Rejection, Usage, parse_event, parse_feedback


class IngestError(LlmpulseError):
    """Base of what the SDK raises."""


class SchemaError(IngestError, ValueError):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


__all__ = [
    "Event",
    "Feedback",
    "IngestError",
    "Rejection",
    "SchemaError",
    "Usage",
    "parse_event",
    "parse_feedback",
]
