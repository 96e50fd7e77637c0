"""Alert rules, the alert state machine, and delivery to PagerDuty, Slack, webhooks,
rollback services and Alertmanager. See docs/alerting.md.

Nothing here touches Kafka or ClickHouse: the evaluator and the dispatcher are given
functions that query, save and send. Exceptions callers catch::

    RulesError      the rules file has problems; ``.errors`` lists each with its line
    SecretError     a secret's environment variable or file cannot be read (the
                    message names the source, never a value)
    SignatureError  a signed webhook or rollback request failed verification (``.reason``)

A failed delivery is not an exception: a notifier returns an ``Outcome`` (ok, retry,
permanent) and ``deliver`` turns a run of them into a ``Delivery``.
"""

from alerting.alert import Notification, alert_identity
from alerting.config import Rule, RuleSet, SecretError
from alerting.rules import RulesError, check_rules, load_rules
from alerting.signing import SignatureError, verify
from alerting.state import AlertState, needs_notify, step

__all__ = [
    "AlertState",
    "Notification",
    "Rule",
    "RuleSet",
    "RulesError",
    "SecretError",
    "SignatureError",
    "alert_identity",
    "check_rules",
    "load_rules",
    "needs_notify",
    "step",
    "verify",
]
