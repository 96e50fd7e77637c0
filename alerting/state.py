"""The alert state machine and the decision to notify: pure functions, clock passed in.

States: inactive → pending (condition true, waiting ``for``) → firing → resolved.
Too few events counts as "condition false", so an alert resolves when traffic moves
away from a bad version (as it does after a rollback). Notifications are decided
from what was last *told* (``notified_*``), not from the transition that just
happened, so a decision lost to a crash is simply made again after the restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

__all__ = [
    "FIRING",
    "INACTIVE",
    "PENDING",
    "RESOLVED",
    "AlertState",
    "needs_notify",
    "notification_id",
    "step",
    "told",
]

INACTIVE = "inactive"
PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"

FIRST = "first"
REPEAT = "repeat"
RESOLVE = "resolved"
REFRESH = "refresh"


@dataclass(frozen=True)
class AlertState:
    alert_id: str
    rule: str
    labels: dict[str, str] = field(default_factory=dict)
    state: str = INACTIVE
    active_at: float | None = None  # the condition became true (pending began)
    fired_at: float | None = None  # this episode began firing
    resolved_at: float | None = None
    value: float | None = None
    count: int = 0
    notified_at: float | None = None  # last first/repeat/resolved message produced
    notified_status: str = ""  # "", firing or resolved: what people were last told
    notified_episode: float | None = None  # fired_at of the episode they were told about
    refreshed_at: float | None = None  # last message of any kind (Alertmanager keep-alive)

    def observe(self, value: float | None, count: int) -> AlertState:
        return replace(self, value=value, count=count)


def step(prev: AlertState, breaching: bool, now: float, for_s: float) -> AlertState:
    """The next state after one evaluation at ``now``."""
    s = prev.state
    if breaching:
        if s in (INACTIVE, RESOLVED):
            if for_s <= 0:
                return replace(prev, state=FIRING, active_at=now, fired_at=now, resolved_at=None)
            return replace(prev, state=PENDING, active_at=now, fired_at=None, resolved_at=None)
        if s == PENDING and prev.active_at is not None and now - prev.active_at >= for_s:
            return replace(prev, state=FIRING, fired_at=now)
        return prev  # pending and still waiting, or firing and still breaching
    if s == PENDING:
        return replace(prev, state=INACTIVE, active_at=None)
    if s == FIRING:
        return replace(prev, state=RESOLVED, resolved_at=now)
    return prev  # inactive or resolved stay as they are


def needs_notify(
    st: AlertState, repeat_s: float, now: float, refresh_s: float | None = None
) -> str | None:
    """Why a message must be produced now (first, repeat, resolved, refresh), or None.

    ``refresh_s`` is set when a receiver expects firing alerts to be re-sent
    (Alertmanager resolves an alert by itself if it stops hearing about it).
    """
    told_this_episode = st.notified_episode is not None and st.notified_episode == st.fired_at
    if st.state == FIRING:
        if not (told_this_episode and st.notified_status == FIRING):
            return FIRST
        if st.notified_at is not None and now - st.notified_at >= repeat_s:
            return REPEAT
        last = st.refreshed_at if st.refreshed_at is not None else st.notified_at
        if refresh_s is not None and last is not None and now - last >= refresh_s:
            return REFRESH
        return None
    if st.state == RESOLVED and told_this_episode and st.notified_status == FIRING:
        return RESOLVE
    return None


def notification_id(st: AlertState, reason: str) -> str:
    """Same persisted state and reason, same id: a decision made twice is delivered once."""
    anchor = {
        FIRST: st.fired_at,
        REPEAT: st.notified_at,
        RESOLVE: st.resolved_at,
        REFRESH: st.refreshed_at if st.refreshed_at is not None else st.notified_at,
    }[reason]
    text = f"{st.alert_id}|{reason}|{anchor!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def told(st: AlertState, reason: str, now: float) -> AlertState:
    """The state after a message for ``reason`` was produced (acked by the broker)."""
    if reason == REFRESH:
        return replace(st, refreshed_at=now)
    status = RESOLVED if reason == RESOLVE else FIRING
    return replace(
        st, notified_at=now, notified_status=status, notified_episode=st.fired_at, refreshed_at=now
    )
