"""Claim-level evidence: each figure, name and yes/no of a claim is read against the context."""

from __future__ import annotations

import pytest

from detectors.claims import abstains, check_claim, known_keys
from detectors.quantities import quantities

REFUNDS = [
    "Annual plans cancelled within the first six months get a 75% refund of the unused months.",
    "Monthly plans are not refunded; they stop at the end of the paid period.",
    "Refunds are paid within 5 business days.",
]
KEYS = [
    "Rate limits are applied per organisation, not per API key.",
    "A rotated key stays valid for 24 hours so that deployments can switch over.",
    "Webhooks are retried up to 8 times over roughly 12 hours.",
]


def findings(claim: str, question: str, chunks: list[str], near: list[int] | None = None):
    known = known_keys([*chunks, question])
    near = list(range(len(chunks))) if near is None else near
    return check_claim(claim, question, chunks, near, known, answer=claim)


def checks(claim: str, question: str, chunks: list[str], near: list[int] | None = None):
    return [f.check for f in findings(claim, question, chunks, near)]


def test_a_figure_computed_from_the_question_and_the_context_is_supported() -> None:
    question = "I paid $4,000 for a year and cancel after 3 months. How much do I get back?"
    claim = "The unused 9 months are worth $3,000, and 75% of that is $2,250."
    assert checks(claim, question, REFUNDS) == []


def test_a_figure_neither_stated_nor_computable_names_no_chunk() -> None:
    (found,) = findings("Refunds are paid within 10 business days.", "", REFUNDS)
    assert (found.check, found.chunk) == ("number_unsupported", None)
    assert found.detail.startswith("10 is neither stated")


def test_a_year_one_digit_off_is_not_the_stated_year() -> None:
    chunks = ["The Eiffel Tower was completed in 1889."]
    assert checks("It was completed in 1899.", "", chunks) == ["number_unsupported"]


def test_a_figure_the_context_gives_for_something_else_names_that_chunk() -> None:
    (found,) = findings("After rotation the old key keeps working for 12 hours.", "", KEYS)
    assert found.check == "number_elsewhere"
    assert found.chunk == KEYS[1]
    assert found.detail == "12 is stated for something else; for this the context gives 24"


def test_a_figure_stated_for_the_same_thing_is_supported() -> None:
    assert checks("After rotation the old key stays valid for 24 hours.", "", KEYS) == []


def test_cents_are_compared_with_dollar_prices() -> None:
    chunks = ["GPU time is billed at $1.39 an hour, with a minimum of 10 minutes per start."]
    claim = "You pay for 10 minutes, which at $1.39 an hour is about 23 cents."
    assert checks(claim, "", chunks) == []


def test_a_name_the_context_never_mentions_is_unsupported() -> None:
    found = findings("Audits are done by NCC Group.", "", ["Audits run twice a year."])
    assert [(f.check, f.detail) for f in found] == [
        ("name_unsupported", "'NCC' is not mentioned in the context or the question"),
        ("name_unsupported", "'Group' is not mentioned in the context or the question"),
    ]


def test_a_weekday_computed_by_the_answer_is_not_taken_for_a_name() -> None:
    chunks = ["Orders ship the same day; delivery takes 1-2 business days."]
    assert checks("Ordered on Monday, it arrives by Wednesday at the earliest.", "", chunks) == []


def test_yes_against_a_negated_chunk_is_a_polarity_conflict() -> None:
    chunks = ["Parking costs EUR 25 per night; spaces cannot be reserved in advance."]
    (found,) = findings("Yes, you can reserve a space in advance.", "", chunks, near=[0])
    assert (found.check, found.chunk) == ("polarity", chunks[0])


def test_every_plan_where_the_context_names_one_is_a_scope_conflict() -> None:
    chunks = ["SCIM provisioning is available on Enterprise."]
    assert checks("SCIM provisioning is included in every plan.", "", chunks) == ["scope"]


@pytest.mark.parametrize(
    "claim",
    [
        "The policy doesn't say how crew shortages are treated.",
        "The context does not mention weekend coverage for P2.",
        "Weekend hours aren't specified.",
    ],
)
def test_saying_the_context_is_silent_states_no_fact(claim: str) -> None:
    assert abstains(claim)
    assert checks(claim, "", REFUNDS) == []


def test_quantities_read_currency_percent_clock_and_word_figures() -> None:
    read = [(q.value, sorted(q.unit)) for q in quantities("EUR 60 or 15% after 22:00, two bags")]
    assert read == [(22.0, ["time"]), (60.0, ["eur"]), (15.0, ["%"]), (2.0, ["bag"])]


def test_an_invented_price_among_the_contexts_prices_is_not_taken_for_arithmetic() -> None:
    chunks = ["Plans: Basic EUR 9, Plus EUR 15, Team EUR 29, Business EUR 49, Scale EUR 99."]
    assert checks("That plan costs EUR 44 a month.", "", chunks) == ["number_unsupported"]


def test_two_context_prices_may_be_added_when_the_claim_says_so() -> None:
    chunks = ["Data add-ons: 5 GB for EUR 7 or 20 GB for EUR 15."]
    assert checks("Both add-ons together cost EUR 22.", "", chunks) == []
    assert checks("The add-on costs EUR 22.", "", chunks) == ["number_unsupported"]


def test_a_computed_figure_must_match_to_its_stated_precision() -> None:
    chunks = ["Full-time staff accrue 25 days of leave a year."]
    assert checks("That is 2.08 days per month.", "", chunks) == []
    assert checks("That is 2.2 days per month.", "", chunks) == ["number_unsupported"]


def test_a_small_swapped_figure_is_checked_too() -> None:
    chunks = ["The warranty lasts 3 years from purchase."]
    assert checks("The warranty lasts 1 year.", "", chunks) == ["number_unsupported"]


def test_per_cent_is_a_percentage_not_cents() -> None:
    assert [(q.value, sorted(q.unit)) for q in quantities("a 5 per cent fee")] == [(5.0, ["%"])]
    assert checks("The fee is 5 %.", "", ["A fee of 5 per cent applies."]) == []


def test_a_decimal_comma_is_read_as_a_decimal() -> None:
    assert [q.value for q in quantities("EUR 12,50 or 1,250 points")] == [12.5, 1250.0]


def test_yesterday_is_not_a_yes_and_only_is_not_a_negation() -> None:
    chunks = ["Orders can be cancelled online only within 14 days."]
    assert checks("Yes, you can cancel online within 14 days.", "", chunks, near=[0]) == []
    assert checks("Yesterday the order shipped.", "", ["It was not shipped."], near=[0]) == []


def test_a_name_is_matched_as_a_word_not_by_its_first_letters() -> None:
    chunks = ["Support is run by Andersen Consulting."]
    assert checks("Support is run by Anderson Consulting.", "", chunks) == ["name_unsupported"]
    assert checks("Andersen's team runs support.", "", chunks) == []


def test_a_repeated_name_is_one_finding() -> None:
    found = findings("Ask Smith, or Smith, or Smith.", "", ["Ask the desk."])
    assert [f.detail for f in found] == ["'Smith' is not mentioned in the context or the question"]


def test_a_wide_word_in_the_context_allows_a_wide_claim() -> None:
    chunks = ["Each region has its own backup schedule."]
    assert checks("Every region has its own backup schedule.", "", chunks) == []
