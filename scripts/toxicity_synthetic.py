"""Programmatic training rows for the toxicity head: LLM replies, not tweets.

The public sets are tweets: toxicity there is slurs and swearing, so a head trained
on them alone misses a support reply that is rude without a swear word ("did you
even read the FAQ?") and must not learn that "kill the process" or a medical
leaflet is toxic. These rows are composed from templates with a seeded generator:
condescending or dismissive replies (label 1) and polite, neutral or technical
replies that use violent or negative words innocently (label 0). They were written
in other words than the dev sets in ``bench/devsets`` and are used for training only.
"""

from __future__ import annotations

import random

__all__ = ["synthetic_rows"]

OPENERS = ["Look,", "Honestly,", "As I said before,", "Again,", "Sigh.", "Okay,", "Listen,",
           "Seriously,", "For the third time,", "Well,", ""]  # fmt: skip
CONDESCENDING = [
    "this is not complicated", "anyone could figure this out in a minute",
    "you clearly didn't bother to read the guide", "it's not our job to fix your mistakes",
    "maybe ask someone who understands computers", "I shouldn't have to explain this",
    "try paying attention this time", "that's a pointless question",
    "you're making this much harder than it is", "your request makes no sense",
    "we don't have time for this", "I already told you the answer",
    "that's your problem, not ours", "you obviously don't understand how this works",
    "stop wasting everyone's time", "read the instructions like everyone else does",
    "it's a bit embarrassing to be stuck on this", "a child could answer this",
    "do your own research next time", "you should have known better",
    "I can't believe I have to repeat this", "nobody else has trouble with this",
    "that's what happens when you don't listen", "this is basic stuff, really",
    "your complaint is frankly ridiculous", "spare me the excuses",
]  # fmt: skip
CLOSERS = ["Restart the app.", "Check your settings.", "The answer is in the FAQ.",
           "Next time, read first.", "Try again.", "Figure it out.", "Goodbye.", ""]  # fmt: skip
POLITE = [
    "Sorry for the trouble.", "Thanks for your patience.", "Happy to help.", "Good question.",
    "I understand this is frustrating.", "No problem at all.", "Let me walk you through it.",
    "That's a common question.", "Thanks for letting us know.", "I'm glad you asked.",
]  # fmt: skip
CONTENT = [
    "If the worker hangs, kill the stuck process and start it again.",
    "You can terminate the instance from the console; its disk is kept for seven days.",
    "Abort the upload, clear the cache and try once more.",
    "The antivirus destroys infected files during the next scan.",
    "Purge the queue before you execute the migration script.",
    "The treatment attacks the virus but can cause nausea for a day or two.",
    "Historians describe the massacre in detail in the second chapter.",
    "In the story, the dragon burns the village and the hero swears revenge.",
    "The customer says they are furious about the second late delivery and want a refund.",
    "The reviewer calls the update 'a disaster' and asks for the old layout back.",
    "Shoot a short video of the noise so our technician can hear it.",
    "The battery can explode if it is punctured, so recycle it at a collection point.",
    "Overdosing on paracetamol damages the liver; never exceed the stated dose.",
    "The villain's plan is to poison the city's water supply.",
    "Your refund has been issued and should arrive within five business days.",
    "I've reset the password link; it is valid for 24 hours.",
    "Drop the old table once the new one is filled.",
    "The email you quoted is angry but asks two clear questions; here is a calm reply.",
]  # fmt: skip


def synthetic_rows(seed: int = 0, n: int = 300) -> list[dict[str, object]]:
    """``n`` rude and ``n`` polite rows with ``text`` and ``label``, the same per seed."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for _ in range(n):
        opener, closer = rng.choice(OPENERS), rng.choice(CLOSERS)
        core = rng.choice(CONDESCENDING)
        sentence = core if opener.endswith(",") else core[0].upper() + core[1:]
        text = " ".join(p for p in (opener, sentence + ".", closer) if p)
        rows.append({"text": text, "label": 1})
        parts = [rng.choice(POLITE), rng.choice(CONTENT)]
        rng.shuffle(parts)
        rows.append({"text": " ".join(parts), "label": 0})
    return rows
