"""Notifiers: one module per channel, all behind the ``Notifier`` protocol.

Channel modules are imported inside ``build_notifier``, not here: ``alerting.http``
imports ``alerting.notifiers.base``, so importing them at package import would be
circular.
"""

from __future__ import annotations

import aiohttp

from alerting.config import ReceiverConfig
from alerting.notifiers.base import Notifier, Outcome

__all__ = ["Notifier", "Outcome", "build_notifier"]


def build_notifier(config: ReceiverConfig, session: aiohttp.ClientSession) -> Notifier:
    """The notifier for ``config.channel``; ``session`` is shared by all of them."""
    if config.channel == "pagerduty":
        from alerting.notifiers.pagerduty import PagerDutyNotifier

        return PagerDutyNotifier(config, session)
    if config.channel == "slack":
        from alerting.notifiers.slack import SlackNotifier

        return SlackNotifier(config, session)
    if config.channel == "webhook":
        from alerting.notifiers.webhook import WebhookNotifier

        return WebhookNotifier(config, session)
    if config.channel == "rollback":
        from alerting.notifiers.webhook import RollbackNotifier

        return RollbackNotifier(config, session)
    if config.channel == "alertmanager":
        from alerting.notifiers.alertmanager import AlertmanagerNotifier

        return AlertmanagerNotifier(config, session)
    raise ValueError(f"receiver {config.name}: unknown channel {config.channel!r}")
