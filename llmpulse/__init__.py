"""Wiring only: settings, the CLI, the embedded broker launcher."""

__version__ = "0.1.0"
