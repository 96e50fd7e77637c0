"""The injection rules' prefilter: a rule is skipped only where it cannot match."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.injection_rules as rules
from detectors.regex_literals import needed_literals


def test_the_most_selective_needed_part_is_chosen() -> None:
    # both the verbs and "rules" are needed; the verbs' shortest is longer
    assert needed_literals(r"\b(?:ignore|forget)\s+(?:all\s+)?rules\b") == {"ignore", "forget"}


def test_optional_parts_are_never_needed() -> None:
    assert needed_literals(r"(?:please\s+)?reveal") == {"reveal"}
    assert needed_literals(r"x(?:abcdef)*") == {"x"}


def test_a_repeat_that_must_match_once_is_needed() -> None:
    assert needed_literals(r"\s(?:secret)+\s") == {"secret"}


def test_a_branch_without_literals_in_every_arm_gives_none() -> None:
    assert needed_literals(r"(?:prompt|\w+)") is None
    assert needed_literals("[\u200b\u200c]{2}") is None


# Words of the rules and the glue between them, so generated texts hit many rules.
_WORDS = sorted({w for lit in rules._LITERALS for w in lit.split()} | {"all", "the", "you"})
_TEXT = st.lists(
    st.one_of(st.sampled_from(_WORDS), st.sampled_from([" ", "  ", ", ", ". ", "\n", "-", "'"])),
    max_size=40,
).map("".join)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_TEXT)
def test_no_rule_matches_a_text_without_one_of_its_literals(text: str) -> None:
    for signal_rules in rules._RULES.values():
        for rx, _, _, literals in signal_rules:
            if literals is not None and re.search(rx, text):
                assert any(lit in text for lit in literals), (rx.pattern, text)


def test_every_rule_but_the_invisible_character_ones_has_a_prefilter() -> None:
    unfiltered = [rx.pattern for rs in rules._RULES.values() for rx, *_, lits in rs if lits is None]
    assert len(unfiltered) == 2
    assert all(not any(c.isalpha() for c in p) for p in unfiltered)
