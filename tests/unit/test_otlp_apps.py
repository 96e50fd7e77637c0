"""The OTLP test apps (tests/otlp_apps): the OpenAI stand-in answers as the docstring
says, through the real openai client, and an instrumented app exports what it did."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.otlp_apps.capture import capture
from tests.otlp_apps.standin import Standin


def client(standin: Standin) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin.base_url, api_key="standin", max_retries=0)


def test_an_answer_follows_from_the_question_with_usage_and_a_dated_model() -> None:
    with Standin() as standin:
        response = client(standin).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Why is the sky blue?"}]
        )
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.choices[0].message.content == "The answer to 'Why is the sky blue?' is 42."
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 10 + 2)
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 2
    assert response.usage.completion_tokens_details is not None
    assert response.usage.completion_tokens_details.reasoning_tokens == 2


def test_a_prompt_with_context_is_answered_with_its_first_document() -> None:
    system = "Answer from the context.\nContext:\n- Refunds take 5 days.\n- Orders ship fast."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Refunds?"}]
    with Standin() as standin:
        response = client(standin).chat.completions.create(model="m", messages=messages)
    assert (response.model, response.choices[0].message.content) == ("m", "Refunds take 5 days.")


def test_a_stream_sends_the_answer_in_chunks_and_the_usage_last() -> None:
    with Standin() as standin:
        chunks = list(
            client(standin).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Hi?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The answer to 'Hi?' is 42."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6 + 2


def test_the_missing_model_is_a_404_as_openai_sends_it() -> None:
    with Standin() as standin, pytest.raises(openai.NotFoundError, match="missing-model"):
        client(standin).chat.completions.create(
            model="missing-model", messages=[{"role": "user", "content": "Hi?"}]
        )


def test_an_instrumented_app_exports_the_spans_of_its_calls(tmp_path: Path) -> None:
    made = capture("try", "openllmetry", ["--calls", "2"], tmp_path)
    assert made["files"] == ["try-traces-1.pb"]
    exported = ExportTraceServiceRequest.FromString((tmp_path / "try-traces-1.pb").read_bytes())
    spans = [s for r in exported.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert [s.trace_id.hex() for s in spans] == made["report"]["traces"]
    assert made["report"]["failed"] == 0
