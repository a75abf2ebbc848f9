"""The console's guards, as plain ASGI middleware (cheap on every request) and small
helpers: bounded requests, security headers, session cookies, CSRF.

- A request body over :data:`BODY_BYTES_MAX` gets 413, whether it says its length or
  streams it; a URL whose query is over :data:`QUERY_BYTES_MAX` gets 414.
- Every answer carries a strict Content-Security-Policy (scripts and styles from this
  site only: htmx is vendored, nothing inline), no framing, no sniffing, no referrer
  outside the site, and ``Cache-Control: no-store`` (pages hold merchants' data).
- The session cookie is HttpOnly, SameSite=Strict, Secure when the request came over
  TLS (directly, or from a proxy the server was told to trust).
- CSRF: every state-changing request (POST) must carry the session's token, in the
  form field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx), compared in constant
  time; the login form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BODY_BYTES_MAX",
    "HEAD_BYTES_MAX",
    "LOGIN_CSRF_COOKIE",
    "QUERY_BYTES_MAX",
    "SESSION_COOKIE",
    "BodyTooLarge",
    "GuardMiddleware",
    "csrf_matches",
    "set_session_cookie",
]

BODY_BYTES_MAX: Final = 64 * 1024
HEAD_BYTES_MAX: Final = 16 * 1024  # the request line and the header fields
QUERY_BYTES_MAX: Final = 4 * 1024
SESSION_COOKIE: Final = "posbatch_session"
LOGIN_CSRF_COOKIE: Final = "posbatch_login"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"vary", b"HX-Request, Cookie"),
]


class BodyTooLarge(Exception):  # noqa: N818 - internal signal
    """Raised by the bounded receive: the answer is 413, whoever was reading the body."""


class GuardMiddleware:
    """Limits request sizes and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > QUERY_BYTES_MAX:
            await _plain(send, 414, "the query is too long")
            return
        # uvicorn (h11) bounds a head only while it is incomplete: one that arrives whole in
        # one read passes, however long. Bound it here, as the docs say.
        head = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
        if head + len(scope.get("raw_path", b"")) > HEAD_BYTES_MAX:
            await _plain(send, 431, "the request head is too large")
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > BODY_BYTES_MAX):
                await _plain(send, 413, "the request body is too large")
                return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > BODY_BYTES_MAX:
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k not in _HEADER_NAMES]
                message = {**message, "headers": headers + _HEADERS}
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await _plain(send, 413, "the request body is too large")


_HEADER_NAMES: Final = frozenset(name for name, _ in _HEADERS)


async def _plain(send: Send, status: int, text: str) -> None:
    body = f"{status} {text}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str, *, max_age_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        httponly=True,
        samesite="strict",
        secure=is_tls(request),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=is_tls(request), path="/"
    )


def new_login_token(response: Response, request: Request) -> str:
    token = secrets.token_urlsafe(32)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_tls(request),
        path="/login",
    )
    return token


def csrf_matches(expected: str, given: Any) -> bool:
    return (
        isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
    )
