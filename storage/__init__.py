"""ClickHouse storage: migrations, the batched idempotent writer, the read-only query path.

Exceptions callers catch::

    StorageError                 anything the engine or server refused
     ├── EngineBusyError         the embedded engine's directory is held by another process
     └── ReadOnlyViolation       a write statement was sent to the read-only path
"""

from storage.engine import Engine, EngineBusyError, StorageError, connect
from storage.readonly import ReadOnlyViolation, check_read_only

__all__ = [
    "Engine",
    "EngineBusyError",
    "ReadOnlyViolation",
    "StorageError",
    "check_read_only",
    "connect",
]
