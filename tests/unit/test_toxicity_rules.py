"""Condescension rules: what a rude support reply does to the reader, not its vocabulary."""

from __future__ import annotations

import pytest

from detectors.toxicity_rules import rude_signals, rule_score


@pytest.mark.parametrize(
    ("reply", "signal"),
    [
        ("You're a complete idiot if you think that works.", "insult"),
        ("You're an idiot and you don't get it.", "insult"),  # two apostrophes, no quote
        ("That's a stupid question.", "insult"),
        ("Stop asking me the same thing.", "dismissal"),
        ("Please don't waste our time with this.", "dismissal"),
        ("You're overreacting, it is a two-day delay.", "dismissal"),
        ("For the last time: the refund takes five days.", "exasperation"),
        ("Did you even read the manual before writing?", "belittling"),
        ("You people never read the FAQ.", "belittling"),
        ("If you'd bothered to check the confirmation, you'd know.", "blaming"),
    ],
)
def test_a_reply_that_belittles_the_reader_fires_a_rule(reply: str, signal: str) -> None:
    assert signal in {name for name, _ in rude_signals(reply)}
    assert rule_score(reply) >= 0.5


@pytest.mark.parametrize(
    "reply",
    [
        "Kill the process with kill -9 and restart the worker.",
        "There are no stupid questions; here is how to reset it.",
        "The customer wrote: 'you people are idiots and I want a refund'. Sentiment: negative.",
        "The opposition called the bill 'a disgrace'.",
        # apostrophes inside a single-quoted span do not end it
        "The caller said the agent was 'rude' and wrote 'you people don't care, you're useless'.",
        "The review reads \u2018you people don\u2019t listen\u2019, so I've escalated it.",
        "Chemotherapy kills rapidly dividing cells.",
        "I'm sorry for the trouble; I've reissued the invoice.",
        "We'll deal with it right away.",
        "To make Chrome stop asking for permission, open its site settings.",
        "Congratulations, you did it!",
        "There's no such thing as a stupid question.",
        "Thank you people at support!",
        "This plan isn't for everyone; the Starter plan may suit you better.",
    ],
)
def test_polite_or_reported_replies_fire_none(reply: str) -> None:
    assert rude_signals(reply) == []
    assert rule_score(reply) == 0.0


def test_two_rules_combine_by_noisy_or() -> None:
    reply = "Stop asking. Did you even read the manual?"
    assert rule_score(reply) == pytest.approx(1 - (1 - 0.85) * (1 - 0.75))


def test_a_mild_signal_alone_stays_below_the_flag_threshold() -> None:
    assert 0.0 < rule_score("As I just explained, the fee is $5.") < 0.5
