"""OTLP export requests -> the records of ``ingest/otlp_model.py``: spans with their
``llm_spans`` columns, LLM calls as Event v1 fields, retrievers' documents, and the
content that libraries send as log records. Pure: no I/O, nothing kept between calls.

Apps are instrumented by several libraries, each with its own (and changing) way to
say the same thing, so every field is read from a list of attribute names, newest
convention first (``_TOKENS``, ``_MODEL``, ...), and the content of a call from
whichever form the span carries:

1. GenAI semantic conventions, newest: ``gen_ai.input.messages``,
   ``gen_ai.output.messages``, ``gen_ai.system_instructions`` (JSON strings of parts);
2. the older span events ``gen_ai.{system,user,assistant,tool}.message`` and
   ``gen_ai.choice``;
3. the oldest span events ``gen_ai.content.prompt`` / ``gen_ai.content.completion``
   (attributes ``gen_ai.prompt`` / ``gen_ai.completion``);
4. OpenInference's ``llm.input_messages.N.message.*`` / ``llm.output_messages.N...``;
5. OpenLLMetry's indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` (and its
   first names, ``llm.prompts.N.*`` / ``llm.completions.N.*``).

The GenAI log-record forms (``gen_ai.client.inference.operation.details`` and the
older per-message records) arrive on /v1/logs, possibly in another request, and are
joined to their span by span_id in :func:`build_event`.

A span is an LLM call when its operation (``gen_ai.operation.name``, else
OpenInference's span kind, else OpenLLMetry's ``llm.request.type``) is chat,
text_completion or generate_content, or when it has none and carries call content; it
is one even without content (capture off), for its model, tokens, cost and latency. Its
:class:`LlmCall` carries ``input``, ``output`` and ``system`` only where the span itself
held that content; :func:`build_event` fills what is missing from the span's logs, then
from nothing (""). A retriever span (operation ``retrieval``) carries its documents'
texts, or ``None`` where they were not captured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from core.errors import LlmpulseError
from ingest.otlp_model import LlmCall, MappedLog, MappedSpan, Rejected, otlp_event_id
from ingest.schema import LIMITS

__all__ = [
    "CONTENT_LOG_NAMES",
    "EVENT_MAX_BYTES",
    "LLM_OPERATIONS",
    "build_event",
    "map_logs",
    "map_spans",
]

# gen_ai.operation.name values that are one call of a model that answers in text
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
CONTENT_LOG_NAMES = frozenset(
    {
        OPERATION_DETAILS,
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
    }
)
_LABELS = (
    "app",
    "model",
    "environment",
    "provider",
    "prompt_id",
    "prompt_version",
    "variant",
    "error_type",
    "user_id",
    "session_id",
)
TRUNCATED_TAG = "llmpulse.truncated"  # which fields build_event cut to the limits
# The largest event build_event makes, as JSON: the worker republishes each one to
# llm.events, and its producer sends at most 1,000,000 bytes a request (Faust's
# default), under the schema's own limit; the rest covers the request's framing.
EVENT_MAX_BYTES = min(LIMITS.payload_bytes, 990_000)
_ATTRIBUTE_CHARS = LIMITS.context_chunk_chars  # a longer string attribute is cut in llm_spans

# openinference.span.kind / traceloop.span.kind / llm.request.type -> operation
_KIND_OPERATIONS = {
    "llm": "chat",
    "retriever": "retrieval",
    "embedding": "embeddings",
    "tool": "execute_tool",
    "agent": "invoke_agent",
    "chain": "chain",
    "reranker": "rerank",
    "guardrail": "guardrail",
    "evaluator": "evaluate",
    "workflow": "workflow",
    "task": "task",
    "chat": "chat",
    "completion": "text_completion",
    "rerank": "rerank",
}
_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUSES = ("unset", "ok", "error")

# Each field, newest convention first; the first attribute present wins.
_OPERATION = ("gen_ai.operation.name",)
_KIND = ("openinference.span.kind", "traceloop.span.kind", "llm.request.type")
_MODEL = (
    "gen_ai.response.model",
    "llm.response.model_name",
    "llm.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "llm.request.model_name",
    "llm.request.model",
    "embedding.model_name",
)
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_PROMPT_VERSION = (
    "llmpulse.prompt_version",
    "gen_ai.prompt.version",
    "llm.prompt_template.version",
)
_PROMPT_ID = ("llmpulse.prompt_id", "gen_ai.prompt.name", "prompt.id")
_VARIANT = ("llmpulse.variant",)
_APP = ("llmpulse.app",)
_ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
_USER = ("llmpulse.user_id", "user.id", "enduser.id")
_SESSION = ("llmpulse.session_id", "session.id", "gen_ai.conversation.id")
_TTFT_S = ("gen_ai.response.time_to_first_chunk",)
_FIRST_TOKEN_EVENTS = ("First Token Stream Event", "gen_ai.content.completion.chunk")
_TOKENS: dict[str, tuple[str, ...]] = {
    "input_tokens": (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
        "llm.usage.prompt_tokens",
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
        "llm.usage.completion_tokens",
    ),
    "cached_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.prompt_details.cache_input",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "llm.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
    ),
}
_TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")

# content attributes, consumed into the event and dropped from llm_spans.attributes
_INPUT_MESSAGES = "gen_ai.input.messages"
_OUTPUT_MESSAGES = "gen_ai.output.messages"
_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
_OLDEST_PROMPT = "gen_ai.prompt"
_OLDEST_COMPLETION = "gen_ai.completion"
_RAW_IO = ("input.value", "input.mime_type", "output.value", "output.mime_type")
_CONTEXT = "llmpulse.context"
_GENAI_DOCUMENTS = "gen_ai.retrieval.documents"
_OI_MESSAGE = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(.+)")
_OI_DOCUMENT = re.compile(r"retrieval\.documents\.(\d+)\.document\.(.+)")
_OI_PROMPT = re.compile(r"llm\.prompts\.(\d+)\.prompt\.text")
_OI_CHOICE = re.compile(r"llm\.choices\.(\d+)\.completion\.text")
_INDEXED = re.compile(
    r"(gen_ai\.prompt|gen_ai\.completion|llm\.prompts|llm\.completions)\.(\d+)\.(.+)"
)
_SPAN_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_MIN_NS = 946_684_800 * 10**9  # 2000-01-01, the earliest ts Event v1 takes
_MAX_NS = 4_102_444_800 * 10**9  # 2100-01-01, the first it refuses


class _Refused(LlmpulseError, ValueError):
    """A span or record that cannot be mapped; the message is the reason."""


# what a content shape nobody foresaw could raise while being read: the span or record
# is refused with the reason instead of stopping the receiver or the worker
_UNFORESEEN = (TypeError, AttributeError, ValueError, KeyError, IndexError, RecursionError)


def _refusal(noun: str, trace_id: bytes, span_id: bytes, exc: Exception) -> Rejected:
    """Why a span or log record is refused: what :class:`_Refused` says, else the error
    of a shape no test foresaw."""
    if isinstance(exc, _Refused):
        reason = str(exc)
    else:
        reason = f"{noun}: unreadable ({type(exc).__name__}: {exc})"[:256]
    return Rejected(trace_id.hex(), span_id.hex(), reason)


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    text: str


@dataclass
class _Content:
    """A call's conversation as read so far: input (system messages included) and
    output messages; ``None`` where the source said nothing of it."""

    input: list[_Message] | None = None
    output: list[_Message] | None = None

    def __bool__(self) -> bool:
        return self.input is not None or self.output is not None


@dataclass
class _Attributes:
    """A span's attributes as Python values, and which of them were consumed."""

    values: dict[str, Any]
    consumed: set[str] = field(default_factory=set)

    def first(self, names: Iterable[str]) -> tuple[str, Any] | None:
        for name in names:
            if name in self.values:
                self.consumed.add(name)
                return name, self.values[name]
        return None

    def take(self, name: str) -> Any:
        if name in self.values:
            self.consumed.add(name)
            return self.values[name]
        return None

    def remaining(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in self.consumed}


# ---------------------------------------------------------------- values


def _any(value: AnyValue) -> Any:
    """An OTLP AnyValue as plain Python: kvlists as dicts, arrays as lists, bytes as hex."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any(kv.value) for kv in pairs}


def _count(name: str, value: Any) -> int:
    """A token count: an integer (or a string or whole float of one), >= 0."""
    if isinstance(value, bool):
        raise _Refused(f"{name}: expected a token count, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise _Refused(f"{name}: expected a token count, got {value!r:.40}")
    if value < 0:
        raise _Refused(f"{name}: token count {value} is negative")
    if value > LIMITS.tokens:
        raise _Refused(f"{name}: token count {value} is over {LIMITS.tokens}")
    return value


def _label(name: str, value: Any) -> str:
    """A label (model, app, version ...): a string, or a number written as one."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Refused(f"{name}: expected a string, got {type(value).__name__}")


def _first_label(attrs: _Attributes, names: Sequence[str], *also: Mapping[str, Any]) -> str:
    """The first of ``names`` set on the span, else on each of ``also`` (the resource)."""
    found = attrs.first(names)
    if found is not None:
        label = _label(*found)
        if label:
            return label
    for other in also:
        for name in names:
            if name in other:
                label = _label(name, other[name])
                if label:
                    return label
    return ""


def _hex_id(raw: bytes, size: int, what: str, *, required: bool = True) -> str:
    if not raw:
        if required:
            raise _Refused(f"{what}: missing")
        return ""
    if len(raw) != size:
        raise _Refused(f"{what}: {len(raw)} bytes, expected {size}")
    if not any(raw):
        if required:
            raise _Refused(f"{what}: all zero")
        return ""
    return raw.hex()


def _utc(ns: int) -> datetime:
    seconds, rest = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)


def _rfc3339(ns: int) -> str:
    return _utc(ns).isoformat().replace("+00:00", "Z")


def _error_type(value: str) -> str:
    """``<class 'openai.NotFoundError'>`` (what some instrumentations write) -> its name."""
    match = re.fullmatch(r"<class '([^']+)'>", value)
    return match.group(1) if match else value


def _json(value: Any) -> Any:
    """A JSON string parsed, anything else as it is (log bodies come structured)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- content


def _part_text(part: Any) -> str:
    """One message part, of the GenAI conventions or OpenAI's content list, as text."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return "" if part is None else str(part)
    kind = str(part.get("type", "text"))
    if kind == "tool_call":
        return _tool_call(part.get("name"), part.get("arguments"))
    if kind == "tool_call_response":
        return f"[tool result] {_stringify(part.get('response', part.get('result')))}"
    if kind in ("reasoning", "thinking"):
        return ""  # the model's reasoning is not its answer
    for key in ("content", "text"):
        if isinstance(part.get(key), str):
            return str(part[key])
    if kind in ("image_url", "input_audio", "uri", "blob", "file", "image", "audio"):
        return f"[{part.get('modality') or kind}]"
    return _stringify(part.get("content", ""))


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _tool_call(name: Any, arguments: Any) -> str:
    args = arguments if isinstance(arguments, str) else _stringify(arguments)
    return f"[tool call] {name or '?'}({args})"


def _content_text(content: Any) -> str:
    """A message's content: a string, a list of parts, or a JSON string of parts."""
    if isinstance(content, str):
        parsed = _json(content) if content.lstrip().startswith("[{") else content
        if isinstance(parsed, list) and all(isinstance(p, dict) for p in parsed):
            return _join(_part_text(p) for p in parsed)
        return content
    if isinstance(content, list):
        return _join(_part_text(p) for p in content)
    return _part_text(content)


def _join(texts: Iterable[str]) -> str:
    return "\n".join(t for t in texts if t)


def _genai_messages(value: Any, default_role: str) -> list[_Message]:
    """``gen_ai.input.messages`` / ``output.messages`` / ``system_instructions`` (a JSON
    string, or structured in a log record): messages of parts, or bare parts."""
    parsed = _json(value)
    if isinstance(parsed, str):
        return [_Message(default_role, parsed)] if parsed else []
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return []
    messages = []
    for item in parsed:
        if isinstance(item, dict) and "parts" in item:
            text = _join(_part_text(p) for p in _as_list(item.get("parts")))
            messages.append(_Message(str(item.get("role") or default_role), text))
        elif isinstance(item, dict) and ("content" in item or "role" in item):
            messages.append(_legacy_message(item, default_role))
        else:
            messages.append(_Message(default_role, _part_text(item)))
    return messages


def _legacy_message(body: Mapping[str, Any], role: str) -> _Message:
    """An OpenAI-style message: content (text or parts), tool_calls, role."""
    text = _content_text(body.get("content"))
    calls = [c.get("function") for c in _as_list(body.get("tool_calls")) if isinstance(c, dict)]
    rendered = [_tool_call(f.get("name"), f.get("arguments")) for f in calls if isinstance(f, dict)]
    return _Message(str(body.get("role") or role), _join([text, *rendered]))


def _event_message(name: str, body: Any) -> tuple[str, _Message] | None:
    """One per-message event (span event or log record) -> ("input"|"output", message)."""
    if not isinstance(body, dict):
        body = {"content": body}
    if name == "gen_ai.choice":
        message = body.get("message") if isinstance(body.get("message"), dict) else body
        merged = {**message, "tool_calls": message.get("tool_calls") or body.get("tool_calls")}
        return "output", _legacy_message(merged, "assistant")
    role = _SPAN_MESSAGE_EVENTS.get(name)
    if role is None:
        return None
    return "input", _legacy_message(body, role)


def _oldest(value: Any, role: str) -> list[_Message]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: plain text, or a JSON list of messages."""
    parsed = _json(value)
    if isinstance(parsed, dict):
        parsed = [parsed]
    if isinstance(parsed, list) and all(isinstance(m, dict) for m in parsed):
        return [
            _Message(str(m.get("role") or role), _content_text(m.get("content", m.get("text"))))
            for m in parsed
        ]
    return [_Message(role, _stringify(parsed))] if parsed not in (None, "") else []


def _indexed(groups: dict[int, dict[str, Any]], role: str) -> list[_Message]:
    """Messages from ``prefix.N.key`` attributes grouped by N, in N order."""
    messages = []
    for _, fields in sorted(groups.items()):
        parts = [
            _Message("", _content_text(fields[k]))
            for k in sorted(fields, key=_natural)
            if k.startswith("contents.") and k.endswith("message_content.text")
        ]
        text = _content_text(fields.get("content")) if "content" in fields else ""
        text = _join([text, *(p.text for p in parts)])
        calls = _indexed_tool_calls(fields)
        messages.append(_Message(str(fields.get("role") or role), _join([text, *calls])))
    return messages


def _indexed_tool_calls(fields: Mapping[str, Any]) -> list[str]:
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        match = re.fullmatch(
            r"tool_calls\.(\d+)\.(?:tool_call\.)?(?:function\.)?(name|arguments)", key
        )
        if match:
            calls.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if "function_call.name" in fields:
        calls.setdefault(-1, {}).update(
            name=fields["function_call.name"], arguments=fields.get("function_call.arguments")
        )
    return [_tool_call(c.get("name"), c.get("arguments")) for _, c in sorted(calls.items())]


def _natural(key: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _span_content(attrs: _Attributes, span: Span) -> _Content:
    """The call's content from the first form the span carries (newest first), with the
    system instructions (``gen_ai.system_instructions``) before its input messages."""
    content = _Content()
    system = attrs.take(_SYSTEM_INSTRUCTIONS)
    inputs = attrs.take(_INPUT_MESSAGES)
    outputs = attrs.take(_OUTPUT_MESSAGES)
    if inputs is not None:
        content.input = _genai_messages(inputs, "user")
    if outputs is not None:
        content.output = _genai_messages(outputs, "assistant")
    readers = (_event_content, _oldest_content, _openinference_content, _indexed_content)
    for reader in readers:
        if content:
            break
        content = reader(attrs, span)
    if system is not None:
        instructions = [_Message("system", m.text) for m in _genai_messages(system, "system")]
        content.input = [*instructions, *(content.input or [])]
    return content


def _event_content(attrs: _Attributes, span: Span) -> _Content:
    content = _Content()
    for event in span.events:
        if event.name not in _SPAN_MESSAGE_EVENTS and event.name != "gen_ai.choice":
            continue
        values = _attributes(event.attributes)
        body = _json(values["gen_ai.event.content"]) if "gen_ai.event.content" in values else values
        found = _event_message(event.name, body)
        if found is None:
            continue
        side, message = found
        if side == "input":
            content.input = [*(content.input or []), message]
        else:
            content.output = [*(content.output or []), message]
    return content


def _oldest_content(attrs: _Attributes, span: Span) -> _Content:
    content = _Content()
    prompt, completion = attrs.take(_OLDEST_PROMPT), attrs.take(_OLDEST_COMPLETION)
    for event in span.events:
        values = _attributes(event.attributes)
        if event.name == "gen_ai.content.prompt" and _OLDEST_PROMPT in values:
            prompt = values[_OLDEST_PROMPT]
        elif event.name == "gen_ai.content.completion" and _OLDEST_COMPLETION in values:
            completion = values[_OLDEST_COMPLETION]
    if prompt is not None:
        content.input = _oldest(prompt, "user")
    if completion is not None:
        content.output = _oldest(completion, "assistant")
    return content


def _openinference_content(attrs: _Attributes, span: Span) -> _Content:
    groups: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    prompts: dict[int, str] = {}
    choices: dict[int, str] = {}
    for key, value in attrs.values.items():
        if match := _OI_MESSAGE.fullmatch(key):
            side, index, rest = match.groups()
            groups[side].setdefault(int(index), {})[rest] = value
        elif match := _OI_PROMPT.fullmatch(key):
            prompts[int(match.group(1))] = _stringify(value)
        elif match := _OI_CHOICE.fullmatch(key):
            choices[int(match.group(1))] = _stringify(value)
        else:
            continue
        attrs.consumed.add(key)
    content = _Content()
    if groups["input"] or prompts:
        content.input = _indexed(groups["input"], "user") + [
            _Message("user", t) for _, t in sorted(prompts.items())
        ]
    if groups["output"] or choices:
        content.output = _indexed(groups["output"], "assistant") + [
            _Message("assistant", t) for _, t in sorted(choices.items())
        ]
    if content:
        for name in _RAW_IO:  # the raw request and response JSON, the same content again
            attrs.take(name)
    return content


def _indexed_content(attrs: _Attributes, span: Span) -> _Content:
    groups: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key, value in attrs.values.items():
        if match := _INDEXED.fullmatch(key):
            prefix, index, rest = match.groups()
            side = "input" if prefix in ("gen_ai.prompt", "llm.prompts") else "output"
            groups[side].setdefault(int(index), {})[rest] = value
            attrs.consumed.add(key)
    content = _Content()
    if groups["input"]:
        content.input = _indexed(groups["input"], "user")
    if groups["output"]:
        content.output = _indexed(groups["output"], "assistant")
    return content


def _render(content: _Content) -> dict[str, str]:
    """input/output/system texts of a conversation, only for the sides it has.

    System messages go to ``system``; the other input messages are the input, bare when
    there is one, else one ``role: text`` line each; the output is the answers' text."""
    rendered: dict[str, str] = {}
    if content.input is not None:
        system = [m.text for m in content.input if m.role in ("system", "developer") and m.text]
        rest = [m for m in content.input if m.role not in ("system", "developer")]
        if system:
            rendered["system"] = "\n".join(system)
        if len(rest) == 1:
            rendered["input"] = rest[0].text
        elif rest:  # only system messages: the input may still come from the span's logs
            rendered["input"] = "\n".join(f"{m.role}: {m.text}" for m in rest)
    if content.output is not None:
        rendered["output"] = "\n".join(m.text for m in content.output if m.text)
    return rendered


# ---------------------------------------------------------------- documents


def _documents(attrs: _Attributes) -> tuple[str, ...] | None:
    """Document texts by rank: OpenInference's retrieval.documents.N.document.content,
    else the GenAI gen_ai.retrieval.documents JSON where its items carry text, else
    llmpulse.context (a string array). ``None`` where the span carries no text: a
    retriever whose documents were not captured (ids and scores only) gives no context,
    which is not the same as a retriever that found nothing (``()``)."""
    ranked: dict[int, str] = {}
    for key, value in attrs.values.items():
        match = _OI_DOCUMENT.fullmatch(key)
        if match and match.group(2) == "content":
            ranked[int(match.group(1))] = _stringify(value)
            attrs.consumed.add(key)  # ids, scores and metadata stay in llm_spans
    if ranked:
        return tuple(text for _, text in sorted(ranked.items()))
    genai = attrs.values.get(_GENAI_DOCUMENTS)
    if genai is not None:
        items = _json(genai)
        texts = [
            _stringify(d.get("content", d.get("text")))
            for d in (items if isinstance(items, list) else [])
            if isinstance(d, dict) and ("content" in d or "text" in d)
        ]
        if texts or items == []:
            attrs.consumed.add(_GENAI_DOCUMENTS)
            return tuple(texts)
        return None
    own = attrs.take(_CONTEXT)
    if own is not None:
        chunks = own if isinstance(own, list) else [own]
        return tuple(_stringify(c) for c in chunks)
    return None


# ---------------------------------------------------------------- spans


def map_spans(request: ExportTraceServiceRequest) -> tuple[list[MappedSpan], list[Rejected]]:
    """Every span of an export request, mapped or rejected with the reason."""
    mapped: list[MappedSpan] = []
    rejected: list[Rejected] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                try:
                    mapped.append(_map_span(span, resource, scope))
                except _UNFORESEEN as exc:
                    rejected.append(_refusal("span", span.trace_id, span.span_id, exc))
    return mapped, rejected


def _map_span(span: Span, resource: Mapping[str, Any], scope: str) -> MappedSpan:
    trace_id = _hex_id(span.trace_id, 16, "trace_id")
    span_id = _hex_id(span.span_id, 8, "span_id")
    parent_span_id = _hex_id(span.parent_span_id, 8, "parent_span_id", required=False)
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not _MIN_NS <= start < _MAX_NS:
        raise _Refused("start_time_unix_nano: missing or outside the years 2000-2099")
    if end < start:
        raise _Refused("end_time_unix_nano: before the span's start")
    attrs = _Attributes(_attributes(span.attributes))

    operation = _operation(attrs)
    tokens = {field: _token(attrs, names) for field, names in _TOKENS.items()}
    total = attrs.first(_TOTAL_TOKENS)
    if total is not None:
        count = _count(*total)
        if tokens["input_tokens"] is None and tokens["output_tokens"] is not None:
            tokens["input_tokens"] = max(count - tokens["output_tokens"], 0)
    model = _first_label(attrs, _MODEL)
    app = _first_label(attrs, _APP, resource) or _label(
        "service.name", resource.get("service.name") or "unknown_service"
    )
    environment = _first_label(attrs, _ENVIRONMENT, resource)
    status = _enum_name(_STATUSES, span.status.code)
    error_type = _error_type(_first_label(attrs, ("error.type",)))
    if not error_type and status == "error":
        error_type = _exception_type(span)
    duration_ns = end - start

    before = set(attrs.consumed)
    content = _span_content(attrs, span)
    is_llm = operation in LLM_OPERATIONS or (not operation and bool(content))
    if not is_llm:  # an agent's or a tool's messages are not a call: they stay in llm_spans
        attrs.consumed = before
    is_retriever = operation == "retrieval"
    documents = _documents(attrs) if (is_llm or is_retriever) else None
    call = None
    event_id = ""
    if is_llm:
        event_id = otlp_event_id(trace_id, span_id)
        call = LlmCall(
            event=_event(
                attrs=attrs,
                resource=resource,
                span=span,
                ids=(event_id, trace_id, span_id, parent_span_id),
                app=app,
                model=model,
                environment=environment,
                status=status,
                error_type=error_type,
                tokens=tokens,
                duration_ns=duration_ns,
                content=_render(content),
                scope=scope,
            ),
            context=documents,
        )
    columns = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "ts": _utc(start),
        "duration_ms": duration_ns / 1e6,
        "name": span.name,
        "kind": _enum_name(_SPAN_KINDS, span.kind),
        "app": app,
        "environment": environment,
        "scope": scope,
        "operation": operation,
        "model": model,
        "status": status,
        "status_message": span.status.message,
        "error_type": error_type,
        "input_tokens": tokens["input_tokens"],
        "output_tokens": tokens["output_tokens"],
        "event_id": event_id,
        "attributes": _remaining_json(attrs),
    }
    return MappedSpan(
        columns=columns,
        start_ns=start,
        end_ns=end,
        call=call,
        documents=documents if is_retriever else None,
    )


def _enum_name(names: Sequence[str], value: int) -> str:
    """An OTLP enum's name; a value out of range (proto3 keeps unknown ones, negative
    too) is the enum's zero, unset or unspecified, never another value's name."""
    return names[value] if 0 <= value < len(names) else names[0]


def _operation(attrs: _Attributes) -> str:
    found = attrs.first(_OPERATION)
    if found is not None and _label(*found):
        return _label(*found)
    kind = attrs.values.get(_KIND[0]) or attrs.values.get(_KIND[1]) or attrs.values.get(_KIND[2])
    if kind is None:
        return ""
    name = _label("span kind", kind).lower()
    return _KIND_OPERATIONS.get(name, "" if name == "unknown" else name)


def _token(attrs: _Attributes, names: Sequence[str]) -> int | None:
    found = attrs.first(names)
    return None if found is None else _count(*found)


def _exception_type(span: Span) -> str:
    for event in span.events:
        if event.name == "exception":
            value = _attributes(event.attributes).get("exception.type")
            if isinstance(value, str):
                return value
    return ""


def _ttft_ms(attrs: _Attributes, span: Span) -> float | None:
    """gen_ai.response.time_to_first_chunk (seconds), else the first-token event's time
    (OpenInference's "First Token Stream Event", OpenLLMetry's first chunk event)."""
    found = attrs.first(_TTFT_S)
    if found is not None:
        name, value = found
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _Refused(f"{name}: expected seconds >= 0, got {value!r:.40}")
        return float(value) * 1000.0
    for event in span.events:
        if event.name in _FIRST_TOKEN_EVENTS and event.time_unix_nano >= span.start_time_unix_nano:
            return (event.time_unix_nano - span.start_time_unix_nano) / 1e6
    return None


def _event(
    *,
    attrs: _Attributes,
    resource: Mapping[str, Any],
    span: Span,
    ids: tuple[str, str, str, str],
    app: str,
    model: str,
    environment: str,
    status: str,
    error_type: str,
    tokens: dict[str, int | None],
    duration_ns: int,
    content: dict[str, str],
    scope: str,
) -> dict[str, Any]:
    event_id, trace_id, span_id, parent_span_id = ids
    usage = {k: v for k, v in tokens.items() if v is not None}
    latency_ms = duration_ns / 1e6
    ttft_ms = _ttft_ms(attrs, span)
    provider = _first_label(attrs, _PROVIDER).lower()
    optional = {
        "environment": environment,
        "provider": provider,
        "prompt_id": _first_label(attrs, _PROMPT_ID, resource),
        "prompt_version": _first_label(attrs, _PROMPT_VERSION, resource),
        "variant": _first_label(attrs, _VARIANT, resource),
        "error_type": error_type,
        "user_id": _first_label(attrs, _USER),
        "session_id": _first_label(attrs, _SESSION),
        "parent_span_id": parent_span_id,
    }
    event: dict[str, Any] = {
        "event_id": event_id,
        "ts": _rfc3339(span.start_time_unix_nano),
        "app": app,
        "model": model or "unknown",
        **content,
        "status": "error" if status == "error" else "ok",
        "trace_id": trace_id,
        "span_id": span_id,
        **{k: v for k, v in optional.items() if v},
    }
    if usage:
        event["usage"] = usage
    if latency_ms <= LIMITS.latency_ms:
        event["latency_ms"] = latency_ms
    if ttft_ms is not None and ttft_ms <= LIMITS.latency_ms:
        event["ttft_ms"] = ttft_ms
    tags = {"otlp.scope": scope, "otlp.span": span.name}
    event["tags"] = {k: v for k, v in tags.items() if v}
    return event


def _remaining_json(attrs: _Attributes) -> str:
    remaining = attrs.remaining()
    cut = sorted(
        k for k, v in remaining.items() if isinstance(v, str) and len(v) > _ATTRIBUTE_CHARS
    )
    for key in cut:
        remaining[key] = remaining[key][:_ATTRIBUTE_CHARS]
    if cut:
        remaining[TRUNCATED_TAG] = cut
    return json.dumps(remaining, ensure_ascii=False, separators=(",", ":"), default=str)


# ---------------------------------------------------------------- logs


def map_logs(request: ExportLogsServiceRequest) -> tuple[list[MappedLog], list[Rejected]]:
    """The GenAI content records of an export request; other records are ignored."""
    mapped: list[MappedLog] = []
    rejected: list[Rejected] = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = _attributes(record.attributes)
                name = record.event_name or attrs.get("event.name")
                if not isinstance(name, str) or name not in CONTENT_LOG_NAMES:
                    continue
                try:
                    mapped.append(_map_log(record, name, attrs))
                except _UNFORESEEN as exc:
                    rejected.append(_refusal("log", record.trace_id, record.span_id, exc))
    return mapped, rejected


def _map_log(record: LogRecord, name: str, attrs: dict[str, Any]) -> MappedLog:
    trace_id = _hex_id(record.trace_id, 16, "trace_id")
    span_id = _hex_id(record.span_id, 8, "span_id")
    body = _any(record.body)
    content = _Content()
    if name == OPERATION_DETAILS:
        source = {**(body if isinstance(body, dict) else {}), **attrs}
        held = _Attributes(source)
        details = _span_content(held, Span())
        content = details
    else:
        found = _event_message(name, body)
        if found is not None:
            side, message = found
            if side == "input":
                content.input = [message]
            else:
                content.output = [message]
    return MappedLog(
        trace_id=trace_id,
        span_id=span_id,
        time_ns=record.time_unix_nano or record.observed_time_unix_nano,
        name=name,
        content=_content_dict(content),
    )


def _content_dict(content: _Content) -> dict[str, Any]:
    """What a MappedLog carries: the messages as JSON-ready data,
    ``{"input": [{"role", "text"}...], "output": [...]}``, each side only if the record
    had it."""
    out: dict[str, Any] = {}
    if content.input is not None:
        out["input"] = [{"role": m.role, "text": m.text} for m in content.input]
    if content.output is not None:
        out["output"] = [{"role": m.role, "text": m.text} for m in content.output]
    return out


def _content_from_logs(logs: Sequence[MappedLog], span_id: str) -> _Content:
    """A span's conversation from its log records, in time order: the latest operation
    details record where there is one (it holds the whole call), else the per-message
    records one after another."""
    own = sorted((log for log in logs if log.span_id == span_id), key=lambda log: log.time_ns)
    details = [log for log in own if log.name == OPERATION_DETAILS]
    chosen = details[-1:] if details else own
    content = _Content()
    for log in chosen:
        for side in ("input", "output"):
            messages = [_Message(str(m["role"]), str(m["text"])) for m in log.content.get(side, [])]
            if side in log.content:
                setattr(content, side, [*(getattr(content, side) or []), *messages])
    return content


# ---------------------------------------------------------------- the event


def build_event(
    call: LlmCall, logs: Sequence[MappedLog], documents: Sequence[str] | None
) -> dict[str, Any]:
    """The Event v1 payload of an LLM span: its own content, what its logs add, and its
    context (the span's own documents, else the trace's retrievers', else none), cut to
    ``ingest.schema.LIMITS`` so validation takes it; a cut is named in the tags."""
    event = dict(call.event)
    missing = [k for k in ("input", "output", "system") if k not in event]
    if missing:
        from_logs = _render(_content_from_logs(logs, str(event.get("span_id", ""))))
        for key in missing:
            if key in from_logs:
                event[key] = from_logs[key]
    event.setdefault("input", "")
    event.setdefault("output", "")
    if call.context is not None:
        event["context"], event["context_source"] = list(call.context), "span"
    elif documents is not None:
        event["context"], event["context_source"] = list(documents), "trace"
    else:
        event["context_source"] = "none"
    return _within_limits(event)


def _within_limits(event: dict[str, Any]) -> dict[str, Any]:
    cut: list[str] = []
    for key in ("input", "output", "system"):
        if isinstance(event.get(key), str) and len(event[key]) > LIMITS.text_chars:
            event[key] = event[key][: LIMITS.text_chars]
            cut.append(key)
    for key in (*_LABELS, "trace_id", "span_id", "parent_span_id"):
        if isinstance(event.get(key), str) and len(event[key]) > LIMITS.label_chars:
            event[key] = event[key][: LIMITS.label_chars]
            cut.append(key)
    context = event.get("context")
    if context is not None:
        chunks = [c[: LIMITS.context_chunk_chars] for c in context[: LIMITS.context_chunks]]
        if chunks != context:
            cut.append("context")
        event["context"] = chunks
    tags = {
        k[: LIMITS.tag_key_chars]: v[: LIMITS.tag_value_chars]
        for k, v in list((event.get("tags") or {}).items())[: LIMITS.tags - 1]
        if k
    }
    event["tags"] = tags
    _fit_payload(event, cut)
    if cut:
        tags[TRUNCATED_TAG] = ",".join(dict.fromkeys(cut))[: LIMITS.tag_value_chars]
    return event


def _fit_payload(event: dict[str, Any], cut: list[str]) -> None:
    """Cut the texts (input, output, system, context chunks) to one common length, the
    longest that lets the JSON, with the truncation tag it will get, fit
    :data:`EVENT_MAX_BYTES`: every text keeps its beginning, and a short one is kept
    whole. Measured with json.dumps' default ASCII escaping, the longest form a producer
    could write; each character is at least one byte of it, so one cut is nearly always
    enough, and the loop takes another where escapes made it fall short."""
    reserve = len(json.dumps({TRUNCATED_TAG: "input,output,system,context"}))
    budget = EVENT_MAX_BYTES - reserve
    size = len(json.dumps(event))
    while size > budget:
        slots: list[tuple[str, int | None]] = [
            (key, None) for key in ("input", "output", "system") if isinstance(event.get(key), str)
        ]
        slots += [("context", i) for i in range(len(event.get("context") or []))]
        lengths = [len(_slot(event, slot)) for slot in slots]
        if not any(lengths):
            return  # nothing left to cut: the other fields alone are within the limits
        cap = _common_cap(lengths, size - budget)
        for (key, index), length in zip(slots, lengths, strict=True):
            if length > cap:
                if index is None:
                    event[key] = event[key][:cap]
                else:
                    event[key][index] = event[key][index][:cap]
                cut.append(key)
        size = len(json.dumps(event))


def _common_cap(lengths: Sequence[int], excess: int) -> int:
    """The longest cap whose cutting of ``lengths`` removes at least ``excess`` chars."""
    low, high = 0, max(lengths)  # cutting to `low` removes enough; to `high`, nothing
    while low < high:
        middle = (low + high + 1) // 2
        if sum(max(length - middle, 0) for length in lengths) >= excess:
            low = middle
        else:
            high = middle - 1
    return low


def _slot(event: dict[str, Any], slot: tuple[str, int | None]) -> str:
    key, index = slot
    return str(event[key] if index is None else event[key][index])
