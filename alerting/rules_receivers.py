"""The ``receivers:`` entries of a rules file: one validated ``ReceiverConfig`` each.

A receiver validates itself and reports every problem (``alerting.rules`` owns the
name and cross-references). Secrets are only ever references, ``X_env`` or ``X_file``;
a literal secret key is an error whose message never contains the value, and a value
that does not look like a variable name may be the secret itself, so it is not echoed.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from yaml.nodes import MappingNode

from alerting.config import CHANNELS, Action, MetricSpec, ReceiverConfig, Secret
from alerting.rules_yaml import Mapping, Problems, is_tag, suggest

__all__ = ["RECEIVER_KEYS", "read_actions", "read_receiver"]

RECEIVER_KEYS = ("name", "type", "url", "url_env", "url_file", "routing_key",
                 "routing_key_env", "routing_key_file", "secret", "secret_env", "secret_file",
                 "timeout_s", "retry_deadline_s", "headers")  # fmt: skip
SECRET_KEY = {"pagerduty": "routing_key", "webhook": "secret", "rollback": "secret"}
URL_REQUIRED = ("webhook", "rollback", "alertmanager")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CREDENTIAL_HEADER = re.compile(r"(?i)authori[sz]ation|cookie|token|secret|password|api[-_]?key")


def read_receiver(m: Mapping, name: str) -> ReceiverConfig:
    """The receiver in ``m`` (checked against RECEIVER_KEYS), problems reported.

    Always returns a config so rules can still be checked against it; its channel is
    ``""`` when the type is unknown. A file with problems yields no RuleSet anyway.
    """
    channel = m.text("type", required=True)
    if channel is not None and channel not in CHANNELS:
        m.error("type", f"unknown receiver type {channel!r}{suggest(channel, CHANNELS)}; "
                        f"expected one of {', '.join(CHANNELS)}")  # fmt: skip
        channel = None
    url, url_secret = _url(m, channel)
    secret = _channel_secret(m, channel)
    timeout = m.number("timeout_s")
    deadline = m.number("retry_deadline_s")
    for key, value in (("timeout_s", timeout), ("retry_deadline_s", deadline)):
        if value is not None and value <= 0:
            m.error(key, "must be > 0 seconds")
    return ReceiverConfig(
        name=name, channel=channel or "", url=url, url_secret=url_secret, secret=secret,
        timeout_s=timeout or 10.0, retry_deadline_s=deadline, headers=_headers(m), line=m.line,
    )  # fmt: skip


def _url(m: Mapping, channel: str | None) -> tuple[str | None, Secret | None]:
    given = [k for k in ("url", "url_env", "url_file") if k in m]
    if len(given) > 1:
        m.error(given[1], f"give one of {' or '.join(given)}, not several")
    url = m.text("url")
    url_secret = _secret(m, "url")
    if channel == "slack" and "url" in m:
        m.error("url", "the Slack webhook URL is a credential: put it in url_env or "
                       "url_file, not in the rules file")  # fmt: skip
        url = None
    elif url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            m.error("url", "must be an http:// or https:// URL")
        elif parts.password is not None:
            m.error("url", "contains a password: put the URL in url_env or url_file")
    if not given and channel == "slack":
        m.error("url_env", "slack receivers need url_env or url_file (the webhook URL)")
    elif not given and channel in URL_REQUIRED:
        m.error("url", f"{channel} receivers need url (or url_env / url_file)")
    return url, url_secret


def _channel_secret(m: Mapping, channel: str | None) -> Secret | None:
    """PagerDuty's routing key, or the HMAC key of a webhook / rollback receiver."""
    own = SECRET_KEY.get(channel or "")
    for base in ("routing_key", "secret"):
        applies = channel is None or base == own
        if base in m:  # the value is never read, so it cannot leak
            m.error(base, f"put secrets in {base}_env or {base}_file, not in the rules file"
                    if applies else f"{channel} receivers take no {base} "
                    "(and secrets never go in the rules file)")  # fmt: skip
        elif not applies and (f"{base}_env" in m or f"{base}_file" in m):
            key = f"{base}_env" if f"{base}_env" in m else f"{base}_file"
            hint = f"; use {own}_env or {own}_file" if own else ""
            m.error(key, f"{channel} receivers take no {base}{hint}")
    if own is None:
        return None
    secret = _secret(m, own)
    given = any(k in m for k in (own, f"{own}_env", f"{own}_file"))
    if not given and channel == "pagerduty":
        m.error("routing_key_env", "pagerduty receivers need routing_key_env or "
                                   "routing_key_file (the integration key)")  # fmt: skip
    elif not given and channel == "rollback":
        m.error("secret_env", "rollback receivers must sign their requests: set "
                              "secret_env or secret_file")  # fmt: skip
    return secret


def _secret(m: Mapping, base: str) -> Secret | None:
    env_key, file_key = f"{base}_env", f"{base}_file"
    env, file = m.text(env_key), m.text(file_key)
    if env_key in m and file_key in m:
        m.error(file_key, f"give {env_key} or {file_key}, not both")
        return None
    if env is not None:
        if not _ENV_NAME.fullmatch(env):  # maybe the secret itself: do not echo it
            m.error(env_key, "must name an environment variable (letters, digits, _), "
                             "not hold the secret itself")  # fmt: skip
            return None
        return Secret(env=env)
    return Secret(file=Path(file)) if file is not None else None


def _headers(m: Mapping) -> dict[str, str]:
    """Extra non-secret headers; credential-looking names are refused, since the
    rules file is not a secret store (put those behind a proxy or in a secret)."""
    out: dict[str, str] = {}
    for name, (value, node) in (m.text_map("headers") or {}).items():
        where = f"{m.at('headers')}.{name}"
        if not _HEADER_NAME.fullmatch(name):
            m.problems.add(node, where, "not a valid HTTP header name")
        elif _CREDENTIAL_HEADER.search(name):
            m.problems.add(node, where, "looks like a credential: headers are for "
                                        "non-secret values only")  # fmt: skip
        elif "\r" in value or "\n" in value:
            m.problems.add(node, where, "header values cannot contain line breaks")
        else:
            out[name] = value
    return out


def read_actions(
    m: Mapping, spec: MetricSpec | None, receivers: dict[str, ReceiverConfig], problems: Problems
) -> list[Action] | None:
    """A rule's actions (``rollback`` or ``{rollback: RECEIVER}``); ``None`` after a problem."""
    items = m.sequence("actions")
    if items is None:
        return None if "actions" in m else []
    rollbacks = [n for n, r in receivers.items() if r.channel == "rollback"]
    out: list[Action] = []
    where = m.at("actions")
    for item in items:
        target: str | None = None
        if is_tag(item, "str") and item.value == "rollback":
            if len(rollbacks) != 1:
                found = f"there are {len(rollbacks)}" if rollbacks else "there is none"
                problems.add(
                    item,
                    where,
                    "'rollback' needs exactly one receiver of "
                    f"type rollback ({found}); write {{rollback: NAME}}",
                )
                continue
            target = rollbacks[0]
        elif isinstance(item, MappingNode) and len(item.value) == 1 and is_tag(
            item.value[0][0], "str") and item.value[0][0].value == "rollback":  # fmt: skip
            value = item.value[0][1]
            target = str(value.value) if is_tag(value, "str") else ""
            if target not in rollbacks:
                bad_type = target in receivers and not receivers[target].channel
                if not bad_type:  # a receiver whose type is wrong is reported already
                    hint = suggest(target, rollbacks)
                    problems.add(value, where, f"{target or 'this'} is not a "
                                      f"receiver of type rollback{hint}")  # fmt: skip
                continue
        else:
            problems.add(item, where, "unknown action: expected rollback or "
                                           "{rollback: RECEIVER}")  # fmt: skip
            continue
        if spec is not None and spec.scope != "version":
            problems.add(item, where, "rollback needs a per-version metric; this "
                                           "metric is per app")  # fmt: skip
        elif any(a.receiver == target for a in out):
            problems.add(item, where, "duplicate action")
        else:
            out.append(Action("rollback", target))
    return out if len(out) == len(items) else None
