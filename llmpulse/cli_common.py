"""What the ``llmpulse`` command modules share, so each can live in its own file."""

from __future__ import annotations

import click

from core.settings import Settings, SettingsError, load_settings

__all__ = ["load_cli_settings"]


def load_cli_settings(**overrides: object) -> Settings:
    """The settings, or a one-line click error naming the bad one."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
