"""Rude replies without a swear word: insults aimed at the reader, and condescension.

An embedding head learns profanity and slurs from tweets; a support reply that says
"Did you even read the manual?" or "Stop asking" shares no word with them and
scores low. These patterns name what such replies do to the reader: call them
names, belittle their ability, dismiss them, or sigh at them. Each pattern has a
strength (below 0.5 for the mild ones, which flag only with another); the rule
score is their noisy-or, and the detector combines it with the
model's probability the same way (``1 - (1 - model) * (1 - rules)``).

Words quoted or reported from someone else ("the customer called us idiots",
'Customer quote: "worst service ever"') are not the reply's own voice: quoted
spans are removed before matching, and the patterns address the reader ("you"),
not a third party.
"""

from __future__ import annotations

import re

__all__ = ["RULES", "rude_signals", "rule_score"]

_YOU = (
    r"\byou(?:'re| are)?\s+(?:an?\s+|such\s+an?\s+)?(?:absolute\s+|complete\s+|total\s+|real\s+)?"
)
RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = tuple(
    (name, strength, re.compile(pattern, re.IGNORECASE))
    for name, strength, pattern in (
        (
            "insult",
            0.9,
            _YOU + r"(?:idiot|moron|fool|imbecile|clown|loser|dumb|stupid|"
            r"incompetent|useless|pathetic|clueless|hopeless|lazy|dense)\b",
        ),
        (
            "insult",
            0.7,
            r"(?<!\bno )(?<!\bnot a )(?<!\bsuch thing as a )"
            r"\b(?:stupid|dumb|moronic|idiotic|pointless|silly)"
            r"\s+(?:question|request|complaint|mistake|excuse)s?\b",
        ),
        (
            "dismissal",
            0.85,
            r"(?:^|[.!?:;,]\s*|\b(?:just|so|please|now)\s+)(?:stop|quit)\s+(?:asking|whining|"
            r"complaining|bothering|moaning|crying|pestering|nagging)\b(?!\s+for\b)|\bshut up\b",
        ),
        ("dismissal", 0.8, r"\b(?:waste|wasting)\s+(?:my|our)\s+time\b"),
        (
            "dismissal",
            0.7,
            r"\b(?:get over it|not my problem|your problem,? not (?:mine|ours)|"
            r"take it or leave it|i don'?t have all day)\b|(?:^|[.!?]\s*)deal with it\b",
        ),
        (
            "dismissal",
            0.75,
            r"\byou(?:'re| are)\s+(?:overreacting|being\s+(?:dramatic|ridiculous|"
            r"unreasonable|hysterical|difficult))\b",
        ),
        (
            "exasperation",
            0.6,
            r"\b(?:for the (?:last|hundredth|umpteenth|third) time|how many "
            r"times (?:do|must|have) i)\b|^\s*sigh\b",
        ),
        # Mild ones (below 0.5) flag a reply only together with another signal.
        (
            "exasperation",
            0.4,
            r"\b(?:as i (?:already|just) (?:said|explained|told you)|"
            r"like i (?:already )?(?:said|told you)|not rocket science)\b",
        ),
        (
            "belittling",
            0.75,
            r"\b(?:did you even (?:read|look|try|bother|check)|can'?t you read|"
            r"you (?:obviously|clearly) (?:haven'?t|didn'?t|don'?t|can'?t)|"
            r"(?:reading|listening) (?:seems|is) (?:hard|difficult)|even a child|"
            r"a child could|use your (?:brain|head|eyes)|"
            r"let me spell it out|in (?:small|simple) words for you|"
            r"isn'?t that hard)\b",
        ),
        ("belittling", 0.7, r"(?<!\bthank )(?<!\bthanks )\b(?:you people|people like you)\b"),
        (
            "sarcasm",
            0.6,
            r"\b(?:congratulations|well done|bravo),?\s+you\s+(?:managed to )?"
            r"(?:break|broke|delete|deleted|lose|lost|mess|messed)\b",
        ),
        ("belittling", 0.4, r"\b(?:confused|clueless|lazy) (?:customers|users|people)\b"),
        (
            "insult",
            0.8,
            r"\byou\b[^.!?]{0,40}\b(?:idiot|moron|dumbass|imbecile|cretin|muppet)s?\b|"
            r"\byour (?:stupid|dumb|idiotic|pathetic|ridiculous|silly) (?:question|request|"
            r"complaint|idea|mistake|problem)s?\b",
        ),
        (
            "belittling",
            0.7,
            r"\bwhat part of\b[^.!?]{1,40}\b(?:don'?t|do not) you (?:understand|get)\b|"
            r"\b(?:try|maybe try|learn) (?:reading|to read)\b|\brtfm\b|\b(?:just )?google it\b|"
            r"\bread the (?:manual|instructions|docs|documentation|faq) (?:next time|first|"
            r"before)\b|\bit'?s (?:literally|right) (?:there|in front of you)\b|"
            r"\bhow hard (?:can it be|is it)\b|\beven my (?:grandma|grandmother|kid|dog)\b|"
            r"\byou must be new\b|\bhold your hand\b|\bspoon-?feed|"
            r"\bdo your (?:own )?(?:homework|research)\b|"
            r"\bfigure it out (?:yourself|on your own)\b|\b(?:it'?s|this is) common sense\b",
        ),
        (
            "blaming",
            0.6,
            r"\b(?:that'?s|this is|it'?s) (?:on you|(?:all )?your (?:own )?fault)\b|"
            r"\bif you had (?:bothered|read|listened|paid attention)\b|"
            r"\b(?:if you'?d|had you) bothered\b|"
            r"\byou should have (?:read|known|checked|listened|paid attention)\b",
        ),
        (
            "exasperation",
            0.6,
            r"\bi(?:'ve| have) (?:already )?told you\b|\bas (?:stated|mentioned|explained) "
            r"(?:multiple|several|many|countless) times\b|\bi shouldn'?t have to\b|"
            r"\bnot my job\b|\bthanks for nothing\b|\bgood luck with that\b|"
            r"\bno offen[cs]e,? but\b|\b(?:for god'?s sake|for crying out loud|ffs|wtf)\b",
        ),
        (
            "patronising",
            0.7,
            r",\s*(?:sweetie|sweetheart|honey|darling)\b|\b(?:sweetie|sweetheart|darling)\s*[,.!]",
        ),
        (
            "exasperation",
            0.4,
            r"\bper my (?:last|previous) (?:message|email|reply)\b|\bwith all due respect\b|"
            r"\bseriously\?|\bnot our fault\b|\byou again\b|\bcalm down\b|"
            r"\bare you (?:serious|kidding)\b|"
            r"\b(?:it'?s|this is) not (?:that )?(?:complicated|difficult|hard)\b",
        ),
    )
)
# A single-quoted span may hold apostrophes between letters ('you don't listen'), or
# its contractions would end it early and leave the rest of the quote to the rules.
_QUOTED = re.compile(
    r"(?<!\w)'(?:[^']|(?<=\w)'(?=\w)){3,}'(?!\w)|\"[^\"]{3,}\"|\u201c[^\u201d]+\u201d|"
    r"\u2018(?:[^\u2019]|(?<=\w)\u2019(?=\w)){3,}\u2019(?!\w)"
)


def rude_signals(text: str) -> list[tuple[str, float]]:
    """The rules that fire on ``text`` outside quotes, with their strengths."""
    own = _QUOTED.sub(" ", text).replace("\u2019", "'")
    return [(name, strength) for name, strength, pattern in RULES if pattern.search(own)]


def rule_score(text: str) -> float:
    """Noisy-or of the strengths of the rules that fire; 0 when none does."""
    doubt = 1.0
    for _, strength in rude_signals(text):
        doubt *= 1.0 - strength
    return 1.0 - doubt
