"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat-completions protocol.

Tests point the real ``openai`` SDK at it (``base_url=fake.base_url``), so the client's sockets,
timeouts, retries and response parsing all run; nothing of ours is mocked.

Quick use::

    from hitcraft_assets_tests.fake_openai import FakeOpenAI, Good, Content, Delay, Status

    with FakeOpenAI(api_key="sk-test") as fake:
        fake.script(Content('{"recommendation": "cut off'), Good())
        resource = LLMResource(api_key="sk-test", base_url=fake.base_url)
        resource.write_recommendations(items, context)
        assert len(fake.requests) == 2

Endpoint: ``POST /v1/chat/completions`` answers in the shape the SDK parses (``id``, ``object``
"chat.completion", ``created``, ``model``, ``choices[{index, message{role, content, refusal},
logprobs, finish_reason}]``, ``usage{prompt_tokens, completion_tokens, total_tokens}``). Like the real
API it checks the request first: a wrong or missing bearer key (when ``api_key`` is set) gets 401
``invalid_api_key``; a body without ``model`` or ``messages``, or a strict ``json_schema``
``response_format`` whose objects do not set ``additionalProperties: false`` and require every
property, gets 400. Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``.

Scripts: ``script(*behaviours)`` queues behaviours; each request consumes one; when the queue is empty
``default`` (``Good()``) answers. Behaviours: ``Good`` (a valid answer, by default built from the
request's own evidence so its numbers are grounded), ``Invented`` (valid shape, one number the evidence
lacks), ``Content`` (any content string: malformed JSON, a wrong schema), ``Refusal``, ``Delay``
(sleeps, then answers), ``Status`` (an error status, optionally echoing the caller's key in the message
as OpenAI's 401 does), ``Raw`` (a 200 that is not a chat completion at all).

Every request is recorded (``requests``) with its path, headers, raw and parsed body, the status
sent with its body and the behaviour used; ``Recorded.prompt`` joins the text of every message.
"""

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

# -- behaviours ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    """A valid answer. Without texts it quotes the request's evidence: its first number as the request's
    JSON wrote it (a share as a percentage, as the prompt asks), and its first ISO date if any. ``usage`` = (prompt, completion) tokens."""

    recommendation: str | None = None
    explanation: str | None = None
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class Invented:
    """A well-formed answer that also states ``number``, which the test's evidence must not hold."""

    number: str = "17%"
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class Content:
    """The assistant message's content exactly as given (malformed JSON, a wrong schema, anything)."""

    text: str
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class Refusal:
    """No content; the message's ``refusal`` is set, as a structured-output refusal is."""

    text: str = "I can't help with that."


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (longer than the client's timeout, typically) and then behave as ``then``."""

    seconds: float
    then: Any = field(default_factory=Good)


@dataclass(frozen=True)
class Status:
    """An error status with OpenAI's error body; ``echo_key`` puts the caller's bearer key in the
    message, as OpenAI's "Incorrect API key provided: ..." does."""

    status: int
    code: str | None = None
    message: str = "The server had an error while processing your request."
    headers: dict[str, str] = field(default_factory=dict)
    echo_key: bool = False


@dataclass(frozen=True)
class Raw:
    """A 200 whose body is not a chat completion (a proxy's login page, JSON of another shape)."""

    body: str = "<html><body>Sign in to continue</body></html>"
    content_type: str = "text/html"


def malformed() -> Content:
    """A JSON answer cut off mid-string."""
    return Content('{"recommendation": "Roll back the Android release and')


# -- recording -----------------------------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-case names
    raw: str
    body: Any
    behaviour: Any = None
    status: int | None = None
    response: Any = None  # the JSON body sent back
    started: float = 0.0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages)


# -- the server ----------------------------------------------------------------------------------


class FakeOpenAI:
    def __init__(self, api_key: str | None = None, default: Any = None) -> None:
        self.api_key = api_key
        self.default = default if default is not None else Good()
        self.requests: list[Recorded] = []
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *behaviours: Any) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # wakes every Delay
        self._server.shutdown()
        self._server.server_close()

    # -- request handling

    def _next(self) -> Any:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                record = Recorded(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw=raw,
                    body=body,
                    started=time.monotonic(),
                )
                with fake._lock:
                    fake.requests.append(record)
                status, payload, headers = fake._respond(record)
                record.status, record.response = status, payload
                if isinstance(payload, Raw):
                    data, content_type = payload.body.encode(), payload.content_type
                else:
                    data, content_type = json.dumps(payload).encode(), "application/json"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:12]}")
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

        return Handler

    def _respond(self, record: Recorded) -> tuple[int, Any, dict[str, str]]:
        if record.path != CHAT_PATH:
            return _error(404, f"Unknown path {record.path}", "invalid_request_error", "unknown_url")
        bearer = record.headers.get("authorization", "")
        if self.api_key is not None and bearer != f"Bearer {self.api_key}":
            key = bearer.removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key")
        problem = _request_problem(record.body)
        if problem:
            return _error(400, problem, "invalid_request_error", None)
        behaviour = self._next()
        record.behaviour = behaviour
        while isinstance(behaviour, Delay):
            self._closing.wait(behaviour.seconds)
            behaviour = behaviour.then
        if isinstance(behaviour, Status):
            message = behaviour.message
            if behaviour.echo_key:
                message = f"Incorrect API key provided: {bearer.removeprefix('Bearer ')}."
            status, payload, _ = _error(behaviour.status, message, "server_error", behaviour.code)
            return status, payload, dict(behaviour.headers)
        if isinstance(behaviour, Raw):
            return 200, behaviour, {}
        return 200, _completion(record, behaviour), {}


def _error(status: int, message: str, kind: str, code: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, {}


def _request_problem(body: Any) -> str | None:
    """What the real API would reject this body for (the parts our client uses), or None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in {"system", "developer", "user", "assistant"}:
            return "Invalid message in 'messages'"
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema":
        return None if fmt.get("type") in {"text", "json_object"} else "Invalid 'response_format.type'"
    spec = fmt.get("json_schema") or {}
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(spec.get("name", ""))):
        return "Invalid 'response_format.json_schema.name'"
    if spec.get("strict") and not _strict_ok(spec.get("schema")):
        return "Invalid schema for response_format: strict mode needs additionalProperties false and every property required"
    return None


def _strict_ok(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "object":
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or []) != set(props):
            return False
        return all(_strict_ok(p) for p in props.values())
    return True


def _completion(record: Recorded, behaviour: Any) -> dict[str, Any]:
    content: str | None
    refusal = None
    finish = "stop"
    usage = getattr(behaviour, "usage", None)
    number, day = _first_evidence_values(record.messages)
    number = _as_people_write(number)
    if isinstance(behaviour, Good):
        content = json.dumps(
            {
                "recommendation": behaviour.recommendation or _good_recommendation(number),
                "explanation": behaviour.explanation or _good_explanation(number, day),
            }
        )
    elif isinstance(behaviour, Invented):
        content = json.dumps(
            {
                "recommendation": f"Fix the release; expect a {behaviour.number} lift.",
                "explanation": _good_explanation(number, day),
            }
        )
    elif isinstance(behaviour, Content):
        content, finish = behaviour.text, behaviour.finish_reason
    elif isinstance(behaviour, Refusal):
        content, refusal = None, behaviour.text
    else:
        raise TypeError(f"unknown behaviour {behaviour!r}")
    if usage is None:
        usage = (max(1, len(record.raw) // 4), max(1, len(content or refusal or "") // 4))
    body = record.body if isinstance(record.body, dict) else {}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]},
        "system_fingerprint": "fp_fake",
    }


def _as_people_write(number: str | None) -> str | None:
    """A model that follows the prompt writes a share (0.4012) as a percentage (40.12%); other numbers as
    the JSON wrote them."""
    if number is None:
        return None
    try:
        value = float(number)
    except ValueError:
        return number
    if 0 < abs(value) < 1 and "e" not in number.lower():
        return f"{value * 100:g}%"
    return number


def _good_recommendation(number: str | None) -> str:
    if number is None:
        return "Have the owning team look into this finding this week."
    return f"Have the owning team look into this finding, starting from the {number} in the evidence."


def _good_explanation(number: str | None, day: str | None) -> str:
    text = "The evidence points to a real change"
    if number is not None:
        text += f": the key value is {number}"
    if day is not None:
        text += f", since {day}"
    return text + "."


def _first_evidence_values(messages: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The first number (as JSON writes it) and ISO date under an ``evidence`` key in the messages."""
    for message in messages:
        if message.get("role") != "user":
            continue
        text = str(message.get("content") or "")
        start = text.find("{")
        if start < 0:
            continue
        try:
            doc, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            continue
        evidence = _find_key(doc, "evidence")
        if evidence is not None:
            return _first(evidence, number=True), _first(evidence, number=False)
    return None, None


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _first(obj: Any, *, number: bool) -> str | None:
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else [obj]
    for value in values:
        if isinstance(value, (dict, list)):
            found = _first(value, number=number)
            if found is not None:
                return found
        elif number and isinstance(value, (int, float)) and not isinstance(value, bool):
            return json.dumps(value)
        elif not number and isinstance(value, str) and _ISO_DATE.match(value):
            return value[:10]
    return None
