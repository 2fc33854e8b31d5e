"""OpenAI-style errors: every refused request gets `{"error": {"message", "type", "param", "code"}}` with one sentence
that says what to change, and the right HTTP status. Nothing else in bot/serve builds an error body."""

from __future__ import annotations

import json
import logging

from aiohttp import web

log = logging.getLogger(__name__)

INVALID = "invalid_request_error"
AUTH = "authentication_error"
OVERLOADED = "server_overloaded"
SERVER = "server_error"
ERROR = web.RequestKey("error", str)  # the error code of a refused request, for the metrics


class ApiError(Exception):
    """A request we refuse: `message` is the one sentence the client sees."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = INVALID, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=json.dumps(self.body()), content_type="application/json",
                            headers=self.headers)  # fmt: skip


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


# aiohttp's own refusals (unknown route, wrong method, body too large) in the same shape.
_HTTP_SENTENCES = {
    404: "There is no such route on this server; see GET /v1/models and POST /v1/audio/speech.",
    405: "This route does not take that HTTP method.",
    413: "The request body is larger than this server accepts.",
}


def from_http(exc: web.HTTPException) -> ApiError:
    message = _HTTP_SENTENCES.get(exc.status, exc.reason or "The request was refused.")
    if exc.status == 413:
        limit = getattr(exc, "_max_size", None) or getattr(exc, "max_size", None)
        if limit:
            message = f"The request body is larger than the {limit} bytes this server accepts."
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status)
    return ApiError(exc.status, message, code=code)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("%s %s refused (%d): %s", request.method, request.path, exc.status, exc.message)
        request[ERROR] = exc.code or exc.kind
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        request[ERROR] = f"http_{exc.status}"
        return from_http(exc).response()
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        request[ERROR] = SERVER
        return ApiError(500, "The server failed on this request; it has been logged, please try again.",
                        kind=SERVER, code="internal_error").response()  # fmt: skip
