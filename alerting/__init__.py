"""Alert rules, the alert state machine and notifiers (PagerDuty, Slack, webhooks).

Not built yet: see the alerting issue. Nothing imports this package today.
"""
