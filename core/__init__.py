"""The bottom layer: what every other package may import, importing no project code.

``errors`` holds the root of every error llmpulse raises on purpose, so that the CLI
can answer any of them with one line instead of a traceback.
"""

from core.errors import LlmpulseError

__all__ = ["LlmpulseError"]
