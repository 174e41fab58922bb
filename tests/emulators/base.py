"""The HTTP machinery both emulators share: routing, auth, a request log and fault injection.

Each emulator is a real HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length on every
response) so clients talk to it exactly as they would to the cloud service. Subclasses add
routes with :meth:`Emulator.route` and say how their service formats an error body.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["429", "500", "503", "drop_after_write", "drop_before", "latency"]
FAULT_KINDS: tuple[FaultKind, ...] = ("429", "500", "503", "drop_after_write", "drop_before", "latency")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the matched route

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is ``{}``. Malformed JSON is a 400."""
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise HttpError(
                400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise HttpError(400, "MALFORMED_REQUEST", "The request body must be a JSON object")
        return value

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> as is; None -> "{}"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps({} if self.body is None else self.body).encode()


class HttpError(Exception):
    """Raised by a route handler; the emulator renders it in its service's error format."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    status: int  # 0 when the connection was dropped without a response
    fault: FaultKind | None
    #: The emulator's clock (``Emulator.timer``) when the request arrived and when its answer
    #: was ready (after the latency wait): two requests whose spans overlap were in flight together.
    started: float = 0.0
    finished: float = 0.0

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


def round_trip_depth(requests: Iterable[RecordedRequest]) -> int:
    """The requests on the critical path: the most of them that went out one after another.

    Requests whose spans overlap were in flight together (one wave); the depth is the longest
    chain of requests each sent after the previous one was answered, i.e. the most pairwise
    disjoint spans (earliest-finish greedy). Logs of several emulators in one process share a
    clock and can be joined. Meaningful with a latency: at 0 ms concurrent spans barely overlap.
    """
    depth = 0
    free_after = float("-inf")
    for request in sorted(requests, key=lambda r: r.finished):
        if request.started > free_after:
            depth += 1
            free_after = request.finished
    return depth


@dataclass
class Fault:
    """One rule: requests matching ``method`` and ``path`` (a regex, full match) get ``kind``.

    ``times`` limits how often the rule fires (None: forever); ``probability`` draws from the
    injector's seeded generator, so a given seed always fails the same requests.
    """

    kind: FaultKind
    path: str = ".*"
    method: str | None = None
    times: int | None = 1
    probability: float = 1.0
    retry_after: float | None = 1.0  # seconds, for 429/503
    delay: float = 0.0  # seconds, for latency
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return re.fullmatch(self.path, path) is not None


class FaultInjector:
    """Seeded, deterministic fault rules, switched on per endpoint by tests and benchmarks."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._random = random.Random(seed)

    def seed(self, seed: int) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def inject(self, kind: FaultKind, path: str = ".*", method: str | None = None, **options: Any) -> Fault:
        return self.add(Fault(kind=kind, path=path, method=method, **options))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None


Handler = Callable[[Request], Response | dict[str, Any] | list[Any] | None]


_Server = TypeVar("_Server", bound="LocalHttpServer")


class _ThreadingServer(ThreadingHTTPServer):
    """One thread per connection, so requests on several connections are served (and wait out
    their latency) at the same time."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops a kept-alive connection (a pool discarding a spare, a retry after
        # a dropped answer) is not a server error: no traceback on stderr, which an in-process
        # CLI test would capture as the command's output.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class LocalHttpServer:
    """An HTTP/1.1 server on 127.0.0.1 in a daemon thread; every method goes to :meth:`handle`.

    Shared by the emulators and the forward proxy. Use as a context manager or call start()/stop().
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self: _Server) -> _Server:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY the client's delayed ACK
            # holds every keep-alive answer about 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                server.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self._server = _ThreadingServer(("127.0.0.1", self._port), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Emulator(LocalHttpServer):
    """Base of both emulators. Use as a context manager or call start()/stop()."""

    #: Paths (regex, full match) that need no credentials.
    public_paths: tuple[str, ...] = ()

    def __init__(self, port: int = 0, seed: int = 0, latency_ms: float = 0.0) -> None:
        super().__init__(port)
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be 0 or more, not {latency_ms}")
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._log_lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.faults = FaultInjector(seed)
        #: Serialises handlers: state changes are atomic, as one request is on the real service.
        self.state_lock = threading.RLock()
        #: How the latency and a latency fault wait; a test can record the delay instead of spending it.
        self.sleep: Callable[[float], None] = time.sleep
        #: Milliseconds every request waits before it is answered, as a network round trip
        #: would (each connection has its own server thread, so concurrent requests wait together).
        #: Tests may change it; reset_latency() (called by the emulators' reset()) restores this one.
        self.latency_ms_default = latency_ms
        self.latency_ms = latency_ms
        #: Stamps RecordedRequest.started/finished.
        self.timer: Callable[[], float] = time.perf_counter

    # -- to be provided by subclasses ------------------------------------------------
    def authenticate(self, request: Request) -> None:
        """Raise HttpError(401/403) when the request's credentials are not accepted."""

    def error_response(self, error: HttpError) -> Response:
        return Response(error.status, {"error_code": error.code, "message": error.message}, error.headers)

    # -- routing ---------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def dispatch(self, request: Request) -> Response:
        path_known = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            path_known = True
            if method != request.method:
                continue
            request.params = match.groupdict()
            try:
                if not any(re.fullmatch(p, request.path) for p in self.public_paths):
                    self.authenticate(request)
                with self.state_lock:
                    result = handler(request)
            except HttpError as error:
                return self.error_response(error)
            except Exception as exc:  # noqa: BLE001 - an emulator bug must answer, not drop the connection
                return self.error_response(HttpError(500, "INTERNAL_ERROR", f"Emulator error: {exc!r}"))
            if isinstance(result, Response):
                return result
            return Response(200, result)
        if path_known:
            return self.error_response(HttpError(405, "METHOD_NOT_ALLOWED", f"{request.method} not allowed"))
        return self.error_response(HttpError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.path}'"))

    # -- request log -----------------------------------------------------------------
    def record(self, entry: RecordedRequest) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def reset_latency(self) -> None:
        self.latency_ms = self.latency_ms_default

    def reset_log(self) -> None:
        with self._log_lock:
            self.requests.clear()

    def writes(self) -> list[RecordedRequest]:
        with self._log_lock:
            return [r for r in self.requests if r.is_write]

    @contextmanager
    def recording(self) -> Iterator[list[RecordedRequest]]:
        """Collects the requests made inside the block (the list fills when the block ends)."""
        with self._log_lock:
            start = len(self.requests)
        captured: list[RecordedRequest] = []
        try:
            yield captured
        finally:
            with self._log_lock:
                captured.extend(self.requests[start:])

    # -- serving ---------------------------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        started = self.timer()
        # The round trip, spent before anything is decided (outside state_lock: concurrent
        # requests, each on its own connection and server thread, wait at the same time).
        if self.latency_ms > 0:
            self.sleep(self.latency_ms / 1000)
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        fault = self.faults.pick(request.method, request.path)
        kind = fault.kind if fault else None
        if fault is not None and kind == "latency":
            self.sleep(fault.delay)
        if kind == "drop_before":
            self._drop(handler, request, kind, started)
            return
        if fault is not None and kind in ("429", "500", "503"):
            status = int(kind)
            headers = {}
            if status in (429, 503) and fault.retry_after is not None:
                headers["Retry-After"] = str(max(0, round(fault.retry_after)))
            code = {429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}[
                status
            ]
            response = self.error_response(HttpError(status, code, f"Injected fault {kind}", headers))
        else:
            response = self.dispatch(request)
        if kind == "drop_after_write":
            self._drop(handler, request, kind, started)
            return
        # Logged before the answer leaves, so a client that has its response finds its request logged.
        self.record(
            RecordedRequest(
                request.method,
                request.path,
                request.query,
                body,
                response.status,
                kind,
                started,
                self.timer(),
            )
        )
        payload = b"" if request.method == "HEAD" else response.encode()
        handler.send_response(response.status)
        content_type = "application/json"
        if isinstance(response.body, bytes):
            content_type = response.headers.get("Content-Type", "application/octet-stream")
        handler.send_header("Content-Type", content_type)
        for name, value in response.headers.items():
            if name != "Content-Type":
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        try:
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up waiting (a latency fault past its timeout): nothing to answer.
            handler.close_connection = True

    def _drop(
        self, handler: BaseHTTPRequestHandler, request: Request, kind: FaultKind, started: float
    ) -> None:
        handler.close_connection = True
        self.record(
            RecordedRequest(
                request.method, request.path, request.query, request.body, 0, kind, started, self.timer()
            )
        )
