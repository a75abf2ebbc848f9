"""The console: a FastAPI app of server-rendered pages over :class:`BackOffice`.

Every route states the permission it needs (:data:`ROUTES` — the role × route table the
tests check); a page parses its URL or form with the library's parsers, calls the
library, and renders. No SQL and no business rule here.

Anonymous requests to a page go to the login page (htmx requests get 401 with
``HX-Redirect``); a role without the permission gets 403; another merchant's record is
404, exactly like one that does not exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlencode

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from posbatch.backoffice import (
    ADJUSTMENT_LABELS,
    BULK_MAX,
    EXPORT_ROWS_MAX,
    FEE_FIELDS,
    RESOLUTION_TEXT,
    STATEMENT_PAGE_LINES,
    AuditFilter,
    BackOffice,
    Cursor,
    ExceptionFilter,
    Permission,
    Role,
    Scope,
    Session,
    TransactionFilter,
    beijing,
    check_day,
    clean_text,
    cleared_note,
    cutoff_on,
    exception_settlement,
    mask_card_numbers,
    parse_ids,
    render_statement,
    schedule_rates,
    statement_csv,
    statement_page,
    statement_page_param,
    trading_day,
)
from posbatch.backoffice._db import CONNECTIONS_PER_REQUEST, connections_max
from posbatch.backoffice._filters import (
    choice_param,
    merchant_id_param,
    number_param,
    terminal_id_param,
)
from posbatch.backoffice._staff import SESSION_LIFETIME_HOURS
from posbatch.batch.money import parse_yuan
from posbatch.errors import (
    BackOfficeError,
    BatchError,
    ConfigError,
    Forbidden,
    HostError,
    LoginRefused,
    NotFound,
    PosbatchError,
)
from posbatch.web._render import CSV_BOM, Renderer, card_type_text, csv_lines, iso_day
from posbatch.web._security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    BodyTooLarge,
    GuardMiddleware,
    clear_session_cookie,
    csrf_matches,
    new_login_token,
    set_session_cookie,
)
from posbatch.web._svg import REASON_TEXT, batch_error_chart

__all__ = ["EXPORTS_PER_USER_MAX", "EXPORT_DEADLINE_S", "ROUTES", "create_app"]

STATIC_DIR: Final = Path(__file__).parent / "static"
HTMX_FILE: Final = "htmx-2.0.11.min.js"
FORM_FIELDS_MAX: Final = BULK_MAX + 20
# A streamed CSV export holds its slot until its last byte is sent: a user who read exports
# slowly, or started many at once, held worker threads and store connections for as long as
# they liked (a merchant user could starve the console). At most this many per user at once…
EXPORTS_PER_USER_MAX: Final = 2
# …and each ends this long after it started, whole or not (a cut export is a broken download:
# the chunked body never gets its last chunk, so no client takes it for a whole file).
EXPORT_DEADLINE_S: Final = 300.0
EXPORT_BUSY: Final = (
    f"an export is already running for you (at most {EXPORTS_PER_USER_MAX} at once): "
    f"wait for it to finish / 您已有导出正在进行（每人最多 {EXPORTS_PER_USER_MAX} 个），请待其完成"
)
# The last row of a transactions export that stopped at EXPORT_ROWS_MAX with more matching.
EXPORT_TRUNCATED: Final = (
    "# cut: more than {rows:,} transactions match; this file holds the newest {rows:,}: "
    "narrow the dates or filters / 超过 {rows:,} 笔，仅含最新的 {rows:,} 笔，请缩小日期或条件"
)
log = logging.getLogger("posbatch.web")

# (method, path) → the permission it needs; None: anyone logged in; "anonymous": no login.
ANONYMOUS: Final = "anonymous"
ROUTES: dict[tuple[str, str], Permission | str | None] = {}

_MESSAGES: Final = {
    "registered": ("终端已登记", "terminal registered"),
    "suspended": ("终端已停用（其交易将回 58）", "terminal suspended (its requests get 58)"),
    "resumed": ("终端已恢复", "terminal active again"),
    "advanced": ("批次已切换", "batch advanced"),
    "resolved": ("差错已处理", "exceptions resolved"),
    "assigned": ("差错已分派", "exceptions assigned"),
    "noted": ("备注已记录", "remark recorded"),
    "user-added": ("用户已添加", "user added"),
    "user-changed": ("用户已更新", "user changed"),
    "user-unchanged": ("用户已是该状态，未更改", "the user was already so: nothing changed"),
    "address-unlocked": ("该地址的登录锁定已解除", "logins from that address may start again"),
    "password": ("密码已修改", "password changed"),
    "fees-set": ("费率已设置", "fee schedule set"),
}


Handler = Callable[[Request, Any], Response]


class _Login(Exception):  # noqa: N818 - control flow to the login page
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Ctx:
    """What a page handler gets: the session and where the request came from."""

    session: Session
    address: str

    @property
    def scope(self) -> Scope:
        return Scope(self.session.user.merchant_id if self.session.user.role == Role.MERCHANT
                     else None)  # fmt: skip

    @property
    def actor(self) -> Any:
        return self.session.user.actor(self.address)


class _ExportBusy(Exception):  # noqa: N818 - control flow to the 429 page
    pass


class _ExportSlots:
    """How many exports each user has running; a slot is taken before an export's response
    is made and given back once, whatever ends the stream."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def running(self, user: str) -> int:
        with self._lock:
            return self._running.get(user, 0)

    def take(self, user: str) -> Callable[[], None]:
        """A slot of ``user``'s (:class:`_ExportBusy` when all are taken) and its release,
        which gives it back the first time it is called only."""
        with self._lock:
            if self._running.get(user, 0) >= self.per_user:
                raise _ExportBusy(EXPORT_BUSY)
            self._running[user] = self._running.get(user, 0) + 1
        given_back = threading.Event()

        def release() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                left = self._running.get(user, 0) - 1
                if left > 0:
                    self._running[user] = left
                else:
                    self._running.pop(user, None)

        return release


class _Export(StreamingResponse):
    """A streamed export that gives its slot back when the stream ends, fails, is cut by the
    client's disconnect (Starlette cancels the stream) or runs past ``deadline_s``."""

    def __init__(
        self, content: Iterable[bytes], *, release: Callable[[], None], deadline_s: float,
        filename: str,
    ) -> None:  # fmt: skip
        self._content = content
        self._release = release
        self._deadline_s = deadline_s
        super().__init__(
            content,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )
        # Should the response never be sent at all (its request cancelled before), its
        # slot still comes back when it is dropped.
        weakref.finalize(self, release)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        try:
            with anyio.move_on_after(self._deadline_s) as deadline:
                await super().__call__(scope, receive, send)
            if deadline.cancelled_caught:
                log.warning("an export ran past %.0f s: cut", self._deadline_s)
        finally:
            try:
                close = getattr(self._content, "close", None)
                if close is not None:  # the generator's own finally runs now, not at GC
                    await anyio.to_thread.run_sync(close)
            except Exception:  # a bug of the export's own: logged; the slot comes back
                log.exception("closing an export failed")
            finally:
                self._release()


def _address(request: Request) -> str:
    """The client's IP address; "-" when it is not one (a trusted proxy's X-Forwarded-For
    may carry any text — a card number was listed whole on /users as a locked address)."""
    host = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "-"


def create_app(
    office: BackOffice,
    *,
    title: str = "posbatch back office",
    exports_per_user: int = EXPORTS_PER_USER_MAX,
    export_deadline_s: float = EXPORT_DEADLINE_S,
) -> FastAPI:
    """The console over ``office`` (which holds the store, the cut-off and the clock)."""
    # No trailing-slash redirect: Starlette's 307 to `/transactions/?last4=…` without the
    # slash repeated the URL whole (a card number in a header) on a host the Host header named.
    app = FastAPI(
        title=title, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    renderer = Renderer(cutoff=lambda: office.cutoff)
    HX_FILE_URL = f"/static/{HTMX_FILE}"  # noqa: N806 - a constant of this app
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    ROUTES[("GET", "/static/{path}")] = ANONYMOUS
    app.add_middleware(GuardMiddleware)
    # Each request holds up to CONNECTIONS_PER_REQUEST of the store's pooled connections at
    # once: let in no more requests than the pool can serve whole, or each of them holds its
    # first and waits for its second until the pool gives up (every request then fails, and
    # ~15 logins at once, with no account, were enough to stop the console).
    pool_max = connections_max(office.store)
    in_store: contextlib.AbstractContextManager[Any] = (
        contextlib.nullcontext()
        if pool_max is None
        else threading.BoundedSemaphore(max(1, pool_max // CONNECTIONS_PER_REQUEST))
    )
    exports = _ExportSlots(exports_per_user)

    def export(
        ctx: Ctx, filename: str, header: list[str], rows: Iterable[list[object]]
    ) -> Response:
        """A streamed CSV of ``rows``, one of the user's export slots held until it ends."""
        release = exports.take(ctx.session.user.name)
        try:
            return _Export(csv_lines(header, rows), release=release,
                           deadline_s=export_deadline_s, filename=filename)  # fmt: skip
        except BaseException:
            release()
            raise

    app.state.exports = exports

    def now() -> datetime:
        return office.clock()

    def cutoff_today() -> time:
        """The cut-off that ends today's trading day (the footer says it)."""
        cutoff = office.cutoff
        return cutoff_on(trading_day(now(), cutoff=cutoff), cutoff=cutoff)

    def page(request: Request, ctx: Ctx | None, name: str, status: int = 200,
             **context: Any) -> HTMLResponse:  # fmt: skip
        message = _MESSAGES.get(request.query_params.get("msg", ""))
        session = None if ctx is None else ctx.session
        body = renderer.render(
            name,
            session=session,
            path=request.url.path,
            user=None if session is None else session.user,
            may=(lambda permission: session is not None and session.user.may(permission)),
            P=Permission,
            csrf=None if session is None else session.csrf_token,
            message=message,
            htmx=HX_FILE_URL,
            now=now(),
            cutoff=cutoff_today(),
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def error_page(request: Request, ctx: Ctx | None, status: int, exc: Exception) -> Response:
        # An error may quote what was typed (an amount field given a card number): masked.
        # A merchant id the store named (15 digits that may pass the card check) stays whole.
        shown = exc.shown_ids if isinstance(exc, PosbatchError) else frozenset()
        # One line: a database's error goes on with the statement and its parameters.
        error = mask_card_numbers((str(exc).splitlines() or [""])[0], allowed=shown)
        if request.headers.get("hx-request") == "true":
            return HTMLResponse(
                renderer.render("_error.html", error=error, status=status), status_code=status
            )
        return page(request, ctx, "error.html", status, error=error, status_code=status)

    def session_of(request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        return office.staff.session(token, now=now()) if token else None

    def guard(request: Request, permission: Permission | None) -> Ctx:
        session = session_of(request)
        if session is None:
            raise _Login
        if permission is not None and not session.user.may(permission):
            raise Forbidden("your role may not open this page / 您的角色无权访问此页")
        return Ctx(session, _address(request))

    def form_of(request: Request, ctx: Ctx) -> FormData:
        """The request's form (read before the handler ran), its CSRF token checked."""
        form: FormData = request.state.form
        given = form.get("csrf_token") or request.headers.get("x-csrf-token")
        if not csrf_matches(ctx.session.csrf_token, given):
            raise Forbidden("the form is stale or forged (CSRF token): reload the page")
        return form

    def route(
        method: str, path: str, permission: Permission | str | None
    ) -> Callable[[Handler], Handler]:
        """Register a handler ``(request, ctx) -> Response`` with its permission."""
        ROUTES[(method, path)] = permission

        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                # The form is read here (bounded by GuardMiddleware and max_fields); all the
                # rest — session, permission, CSRF, library, rendering — in ONE worker thread.
                request.state.form = None
                if method == "POST":
                    try:
                        request.state.form = await request.form(
                            max_files=0, max_fields=FORM_FIELDS_MAX
                        )
                    except BodyTooLarge:  # streamed past BODY_BYTES_MAX: GuardMiddleware's 413
                        raise
                    except Exception:  # a malformed body: the peer's fault, one clear answer
                        return error_page(request, None, 400, ConfigError("unreadable form"))
                if _holds_nul(request):
                    return error_page(request, None, 400, ConfigError(NUL_REFUSED))
                return await run_in_threadpool(dispatch, request)

            def dispatch(request: Request) -> Response:
                try:
                    with in_store, office.reading():  # one connection for the request's reads
                        return dispatch_reading(request)
                except PosbatchError as exc:  # the store cannot be reached at all
                    log.warning("request failed: %s", type(exc).__name__)
                    try:
                        return error_page(request, None, 503, exc)
                    except Exception:  # the page itself needs the store (its cut-off)
                        return PlainTextResponse(
                            f"503 {mask_card_numbers(str(exc))}", status_code=503
                        )

            def dispatch_reading(request: Request) -> Response:
                ctx: Ctx | None = None
                try:
                    if permission == ANONYMOUS:
                        return handler(request, None)
                    ctx = guard(request, permission if isinstance(permission, Permission) else None)
                    return handler(request, ctx)
                except _Login:
                    if request.headers.get("hx-request") == "true":
                        return Response(status_code=401, headers={"HX-Redirect": "/login"})
                    target = mask_card_numbers(request.url.path)  # /exceptions/6222…: too
                    if request.url.query and method == "GET":
                        # Back to the same search after login — never a card number in it.
                        target += "?" + mask_card_numbers(unquote(request.url.query))
                    return RedirectResponse(
                        "/login?" + urlencode({"next": target[:512]}), status_code=303
                    )
                except Forbidden as exc:
                    return error_page(request, ctx, 403, exc)
                except _ExportBusy as exc:
                    return error_page(request, ctx, 429, exc)
                except NotFound as exc:
                    return error_page(request, ctx, 404, exc)
                except (ConfigError, ValueError) as exc:
                    text = str(exc) if isinstance(exc, ConfigError) else "a value is not valid"
                    return error_page(request, ctx, 400, ConfigError(text))
                except (BackOfficeError, HostError, BatchError) as exc:
                    return error_page(request, ctx, 409, exc)
                except PosbatchError as exc:
                    log.warning("request failed: %s", type(exc).__name__)
                    return error_page(request, ctx, 503, exc)
                except Exception:  # a bug: logged without the request's data, never shown
                    log.exception("%s %s failed", method, path)
                    return error_page(
                        request, ctx, 500, RuntimeError("内部错误 internal error (logged)")
                    )

            app.add_api_route(path, endpoint, methods=[method], name=f"{method} {path}")
            return handler

        return register

    def see(path: str, msg: str | None = None, **params: str) -> RedirectResponse:
        query = {**params, **({"msg": msg} if msg else {})}
        return RedirectResponse(path + ("?" + urlencode(query) if query else ""), 303)

    # --- login -----------------------------------------------------------------------------

    def login_page(
        request: Request, *, next_path: str, error: str | None, status: int = 200,
        name: str = "",
    ) -> Response:  # fmt: skip
        response = HTMLResponse("", status_code=status)
        token = new_login_token(response, request)
        response.body = renderer.render(
            "login.html", session=None, path="/login", user=None, may=lambda _: False, P=Permission,
            csrf=None, message=None, htmx=HX_FILE_URL, now=now(), cutoff=cutoff_today(),
            next=next_path, error=error, login_csrf=token, typed_name=clean_text(name, 64),
        ).encode()  # fmt: skip
        response.headers["content-length"] = str(len(response.body))
        return response

    @route("GET", "/login", ANONYMOUS)
    def login_form(request: Request, _: None) -> Response:
        if session_of(request) is not None:
            return see("/")
        return login_page(request, next_path=_next(request), error=None)

    @route("POST", "/login", ANONYMOUS)
    def login(request: Request, _: None) -> Response:
        form: FormData = request.state.form
        next_path = _safe_next(str(form.get("next", "")))
        # A refused login keeps the name typed (masked: a card number typed as a name is
        # shown 6/4), never the password; the password field then has the focus.
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get("login_csrf")):
            return login_page(
                request, next_path=next_path, status=403, name=name,
                error="登录表单已过期，请重试 / the login form is stale: try again",
            )  # fmt: skip
        try:
            token, _session = office.staff.login(
                name, password, address=_address(request), now=now()
            )
        except LoginRefused as exc:
            return login_page(request, next_path=next_path, error=str(exc), status=401, name=name)
        # A login over a live session (another user at the same browser) ends that one on
        # the server too: its cookie is replaced here, but a copy of it would go on working.
        previous = request.cookies.get(SESSION_COOKIE, "")
        if previous:
            office.staff.logout(previous, address=_address(request), now=now())
        response = see(next_path)
        set_session_cookie(response, request, token, max_age_s=SESSION_LIFETIME_HOURS * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @route("POST", "/logout", None)
    def logout(request: Request, ctx: Ctx) -> Response:
        form_of(request, ctx)
        token = request.cookies.get(SESSION_COOKIE, "")
        office.staff.logout(token, address=ctx.address, now=now())
        response = see("/login")
        clear_session_cookie(response, request)
        return response

    # --- overview --------------------------------------------------------------------------

    @route("GET", "/", Permission.VIEW)
    def overview(request: Request, ctx: Ctx) -> Response:
        today = trading_day(now(), cutoff=office.cutoff)
        day = iso_day(request.query_params.get("day"), today, name="day")
        data = office.queries.overview(ctx.scope, day, now=now())
        name = "_overview.html" if request.headers.get("hx-request") == "true" else "overview.html"
        return page(
            request, ctx, name, o=data, chart=batch_error_chart(data.batch_errors),
            today=today, previous=day - timedelta(days=1), following=day + timedelta(days=1),
            reasons=REASON_TEXT,
        )  # fmt: skip

    # --- terminals -------------------------------------------------------------------------

    @route("GET", "/terminals", Permission.VIEW)
    def terminals(request: Request, ctx: Ctx) -> Response:
        params = request.query_params
        merchant = merchant_id_param(params)
        status = choice_param(params, "status", ("active", "suspended"))
        after = terminal_id_param(params, "after")
        rows, more = office.queries.terminals(
            ctx.scope, merchant_id=merchant, status=status, after=after
        )
        query = {k: v for k, v in {"merchant_id": merchant, "status": status}.items() if v}
        return page(request, ctx, "terminals.html", rows=rows, more=more, query=query,
                    kcv=None, form={})  # fmt: skip

    @route("POST", "/terminals", Permission.MANAGE_TERMINALS)
    def register_terminal(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        values = {k: str(form.get(k, "")) for k in ("merchant_id", "terminal_id", "kcv")}
        try:
            kcv = office.register_terminal(
                ctx.actor, values["merchant_id"].strip(), values["terminal_id"].strip(),
                str(form.get("master_key", "")), expected_kcv=values["kcv"],
            )  # fmt: skip
        except PosbatchError as exc:
            rows, more = office.queries.terminals(ctx.scope)
            status = 409 if isinstance(exc, BackOfficeError) else 400
            shown = {key: clean_text(value, 32) for key, value in values.items()}  # no card
            return page(request, ctx, "terminals.html", status, rows=rows, more=more, query={},
                        kcv=None, form=shown, error=str(exc))  # fmt: skip
        rows, more = office.queries.terminals(ctx.scope)
        return page(request, ctx, "terminals.html", rows=rows, more=more, query={}, kcv=kcv,
                    form={}, registered=values["terminal_id"].strip())  # fmt: skip

    @route("GET", "/terminals/{terminal_id}", Permission.VIEW)
    def terminal(request: Request, ctx: Ctx) -> Response:
        terminal_id = _path_terminal(request)
        row = office.queries.terminal(ctx.scope, terminal_id)
        batches, _ = office.queries.batches(ctx.scope, terminal_id=terminal_id, limit=20)
        return page(request, ctx, "terminal.html", t=row, batches=batches)

    @route("POST", "/terminals/{terminal_id}/suspend", Permission.MANAGE_TERMINALS)
    def suspend(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        terminal_id = _path_terminal(request)
        resume = form.get("resume") == "1"
        office.set_suspended(ctx.actor, terminal_id, suspended=not resume)
        return see(f"/terminals/{terminal_id}", "resumed" if resume else "suspended")

    @route("POST", "/terminals/{terminal_id}/advance", Permission.MANAGE_TERMINALS)
    def advance(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        terminal_id = _path_terminal(request)
        office.advance_batch(ctx.actor, terminal_id, str(form.get("reason", "")))
        return see(f"/terminals/{terminal_id}", "advanced")

    # --- transactions ----------------------------------------------------------------------

    @route("GET", "/transactions", Permission.VIEW)
    def transactions(request: Request, ctx: Ctx) -> Response:
        params = request.query_params
        try:
            search = TransactionFilter.parse(params)
            after = Cursor.parse(params.get("after"))
        except ConfigError as exc:
            return page(request, ctx, "transactions.html", 400, rows=[], next_url=None,
                        f=TransactionFilter(), raw=_raw(params), error=str(exc),
                        export_url=None)  # fmt: skip
        rows, cursor = office.queries.search(ctx.scope, search, after=after)
        query = search.query()
        next_url = None
        if cursor is not None:
            next_url = "/transactions?" + urlencode({**query, "after": cursor.encode()})
        name = (
            "_transactions.html"
            if request.headers.get("hx-request") == "true"
            and request.headers.get("hx-target") == "results"
            else "transactions.html"
        )
        return page(request, ctx, name, rows=rows, next_url=next_url, f=search,
                    raw=query, error=None,
                    export_url="/transactions.csv?" + urlencode(query))  # fmt: skip

    @route("GET", "/transactions.csv", Permission.VIEW)
    def transactions_csv(request: Request, ctx: Ctx) -> Response:
        search = TransactionFilter.parse(request.query_params)
        cutoff = office.cutoff

        def rows() -> Iterator[list[object]]:
            sent, last = 0, None
            for row in office.queries.export(ctx.scope, search):
                sent, last = sent + 1, row
                yield [
                    f"{beijing(row.created_at):%Y-%m-%d %H:%M:%S}",
                    trading_day(row.created_at, cutoff=cutoff).isoformat(),
                    row.merchant_id, row.terminal_id, f"{row.batch_no:06d}", f"{row.stan:06d}",
                    row.kind, _yuan(row.amount_fen),
                    card_type_text(row.card_type), row.pan_masked, row.status, row.response_code,
                    row.rrn or "", row.auth_code or "",
                ]  # fmt: skip
            # a file that ends as if it were whole would be read as all of them
            if (
                sent >= EXPORT_ROWS_MAX
                and last is not None
                and office.queries.more_after(ctx.scope, search, last)
            ):
                yield [EXPORT_TRUNCATED.format(rows=EXPORT_ROWS_MAX)]

        header = ["time (Beijing) 时间", "trading day 交易日", "merchant_id 商户号",
                  "terminal_id 终端号", "batch_no 批次号", "stan 流水号", "kind 类型",
                  "amount 金额(元)", "card_type 卡类", "card 卡号", "status 状态",
                  "response_code 应答码", "rrn 参考号", "auth_code 授权码"]  # fmt: skip
        stamp = f"{beijing(now()):%Y%m%d-%H%M%S}"
        return export(ctx, f"transactions-{stamp}.csv", header, rows())

    # --- batches ---------------------------------------------------------------------------

    @route("GET", "/batches", Permission.VIEW)
    def batches(request: Request, ctx: Ctx) -> Response:
        params = request.query_params
        terminal_id = terminal_id_param(params)
        merchant = merchant_id_param(params)
        state = choice_param(params, "state", ("OPEN", "UPLOADING", "CLOSED"))
        before = number_param(params, "before", 12)
        rows, more = office.queries.batches(
            ctx.scope, terminal_id=terminal_id, merchant_id=merchant, state=state,
            before_id=before,
        )  # fmt: skip
        query = {k: v for k, v in {"terminal_id": terminal_id, "merchant_id": merchant,
                                   "state": state}.items() if v}  # fmt: skip
        next_url = None if more is None else "/batches?" + urlencode({**query, "before": more})
        return page(request, ctx, "batches.html", rows=rows, next_url=next_url, query=query)

    @route("GET", "/batches/{batch_id}", Permission.VIEW)
    def batch(request: Request, ctx: Ctx) -> Response:
        batch_id = _path_int(request, "batch_id")
        after = number_param(request.query_params, "after_stan", 6)
        detail = office.queries.batch(ctx.scope, batch_id, after_stan=after)
        return page(request, ctx, "batch.html", d=detail)

    # --- exceptions ------------------------------------------------------------------------

    def staff_names(ctx: Ctx) -> list[str]:
        """Who work can be assigned to — for those who assign it only (never a merchant)."""
        if not ctx.session.user.may(Permission.RESOLVE_EXCEPTIONS):
            return []
        return office.exceptions.assignees()

    @route("GET", "/exceptions", Permission.VIEW)
    def exceptions(request: Request, ctx: Ctx) -> Response:
        params = request.query_params
        queue_filter = ExceptionFilter.parse(params)
        after = _after_key(params.get("after", ""))
        items, more = office.exceptions.queue(ctx.scope, queue_filter, after=after)
        query = queue_filter.query()
        next_url = None
        if more is not None:
            next_url = "/exceptions?" + urlencode({**query, "after": f"{more[0]}-{more[1]}"})
        assignees = staff_names(ctx)
        return page(request, ctx, "exceptions.html", items=items, next_url=next_url,
                    f=queue_filter, query=query, resolutions=RESOLUTION_TEXT,
                    assignees=assignees, now_=now(),
                    export_url="/exceptions.csv?" + urlencode(query))  # fmt: skip

    @route("GET", "/exceptions.csv", Permission.VIEW)
    def exceptions_csv(request: Request, ctx: Ctx) -> Response:
        queue_filter = ExceptionFilter.parse(request.query_params)

        def rows() -> Iterator[list[object]]:
            for item in office.exceptions.export(ctx.scope, queue_filter):
                history = office.exceptions.history(ctx.scope, item.exception_id)
                yield [
                    item.exception_id, f"{beijing(item.created_at):%Y-%m-%d %H:%M:%S}",
                    trading_day(item.created_at, cutoff=office.cutoff).isoformat(),
                    item.merchant_id, item.terminal_id,
                    "" if item.batch_no is None else f"{item.batch_no:06d}",
                    "" if item.stan is None else f"{item.stan:06d}", item.kind, item.cause,
                    _yuan(item.terminal_amount_fen), _yuan(item.host_amount_fen), item.status,
                    item.assignee or "", item.resolution or "", _yuan(item.amount_fen),
                    item.resolved_by or "",
                    " | ".join(
                        f"{beijing(s.created_at):%Y-%m-%d %H:%M} {s.actor} {s.step}"
                        f"{' ' + s.resolution if s.resolution else ''}"
                        f"{' → ' + s.assignee if s.assignee else ''}: {s.remark}"
                        for s in history
                    ),
                ]  # fmt: skip

        header = ["id 编号", "time (Beijing) 时间", "trading day 交易日", "merchant_id 商户号",
                  "terminal_id 终端号", "batch_no 批次号", "stan 流水号", "kind 类型",
                  "cause 原因", "terminal amount 终端金额", "host amount 主机金额",
                  "status 状态", "assignee 处理人", "resolution 处理方式",
                  "resolution amount 处理金额", "resolved_by 处理者", "history 历史"]  # fmt: skip
        stamp = f"{beijing(now()):%Y%m%d-%H%M%S}"
        return export(ctx, f"exceptions-{stamp}.csv", header, rows())

    @route("GET", "/exceptions/{exception_id}", Permission.VIEW)
    def exception(request: Request, ctx: Ctx) -> Response:
        exception_id = _path_int(request, "exception_id")
        item = office.exceptions.item(ctx.scope, exception_id)
        history = office.exceptions.history(ctx.scope, exception_id)
        assignees = staff_names(ctx)
        return page(request, ctx, "exception.html", x=item, history=history,
                    resolutions=RESOLUTION_TEXT, assignees=assignees)  # fmt: skip

    @route("POST", "/exceptions/resolve", Permission.RESOLVE_EXCEPTIONS)
    def resolve(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        ids = parse_ids([str(v) for v in form.getlist("id")])
        amount_text = str(form.get("amount", "")).strip()
        amount = parse_yuan(amount_text) if amount_text else None
        office.exceptions.resolve(
            ctx.actor, ids, str(form.get("resolution", "")), str(form.get("remark", "")),
            amount_fen=amount, now=now(),
        )  # fmt: skip
        if len(ids) == 1 and form.get("back") == "item":
            return see(f"/exceptions/{ids[0]}", "resolved")
        return see("/exceptions", "resolved")

    @route("POST", "/exceptions/assign", Permission.RESOLVE_EXCEPTIONS)
    def assign(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        ids = parse_ids([str(v) for v in form.getlist("id")])
        office.exceptions.assign(
            ctx.actor, ids, str(form.get("assignee", "")), str(form.get("remark", "")),
            now=now(),
        )  # fmt: skip
        if len(ids) == 1 and form.get("back") == "item":
            return see(f"/exceptions/{ids[0]}", "assigned")
        return see("/exceptions", "assigned")

    @route("POST", "/exceptions/{exception_id}/note", Permission.RESOLVE_EXCEPTIONS)
    def note(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        exception_id = _path_int(request, "exception_id")
        office.exceptions.note(ctx.actor, exception_id, str(form.get("remark", "")), now=now())
        return see(f"/exceptions/{exception_id}", "noted")

    # --- support desk ----------------------------------------------------------------------

    @route("GET", "/support", Permission.SUPPORT_DESK)
    def support_pick(request: Request, ctx: Ctx) -> Response:
        terminal_id = terminal_id_param(request.query_params)
        if terminal_id is not None:
            return see(f"/support/{terminal_id}")
        return page(request, ctx, "support_pick.html")

    @route("GET", "/support/{terminal_id}", Permission.SUPPORT_DESK)
    def support(request: Request, ctx: Ctx) -> Response:
        view = office.support(ctx.scope, _path_terminal(request))
        return page(request, ctx, "support.html", v=view, r=view.report, k=view.ticket)

    @route("GET", "/support/{terminal_id}/ticket", Permission.SUPPORT_DESK)
    def ticket(request: Request, ctx: Ctx) -> Response:
        view = office.support(ctx.scope, _path_terminal(request))
        return page(request, ctx, "ticket.html", k=view.ticket)

    # --- audit -----------------------------------------------------------------------------

    @route("GET", "/audit", Permission.READ_AUDIT)
    def audit(request: Request, ctx: Ctx) -> Response:
        params = request.query_params
        audit_filter = AuditFilter.parse(params)
        before = number_param(params, "before", 12)
        entries = office.audit.search(audit_filter, before_id=before)
        query = audit_filter.query()
        next_url = None
        if len(entries) == 100:
            next_url = "/audit?" + urlencode({**query, "before": entries[-1].audit_id})
        return page(request, ctx, "audit.html", entries=entries, f=audit_filter, query=query,
                    next_url=next_url,
                    export_url="/audit.csv?" + urlencode(query))  # fmt: skip

    @route("GET", "/audit.csv", Permission.EXPORT_AUDIT)
    def audit_csv(request: Request, ctx: Ctx) -> Response:
        audit_filter = AuditFilter.parse(request.query_params)

        def rows() -> Iterator[list[object]]:
            before: int | None = None
            while True:
                entries = office.audit.search(audit_filter, before_id=before)
                for entry in entries:
                    yield [
                        entry.audit_id, f"{beijing(entry.created_at):%Y-%m-%d %H:%M:%S}",
                        entry.actor, entry.role, entry.address, entry.action, entry.target,
                        entry.outcome, _json(entry.before), _json(entry.after), entry.detail,
                    ]  # fmt: skip
                if len(entries) < 100:
                    return
                before = entries[-1].audit_id

        header = ["id", "time (Beijing)", "actor", "role", "address", "action", "target",
                  "outcome", "before", "after", "detail"]  # fmt: skip
        return export(ctx, "audit.csv", header, rows())

    # --- the merchant's money: statements and fees -----------------------------------------

    def statement_of(request: Request, ctx: Ctx) -> tuple[str | None, date, Any]:
        """The merchant and trading day the URL asks for, and their statement (None while
        no merchant is chosen: staff pick one first)."""
        params = request.query_params
        merchant = merchant_id_param(params) or ctx.scope.merchant_id
        day = iso_day(params.get("date"), trading_day(now(), cutoff=office.cutoff))
        check_day(day)  # also when no merchant is chosen yet: the page links day ± 1
        if merchant is None:
            return None, day, None
        return merchant, day, office.money.statement(ctx.scope, merchant, day)

    @route("GET", "/statements", Permission.VIEW)
    def statements(request: Request, ctx: Ctx) -> Response:
        number = statement_page_param(request.query_params)
        merchant, day, found = statement_of(request, ctx)
        today = trading_day(now(), cutoff=office.cutoff)
        query = {"merchant_id": merchant or "", "date": day.isoformat()}
        lines = None if found is None else statement_page(
            found, number, lines_per_page=STATEMENT_PAGE_LINES
        )  # fmt: skip
        return page(
            request, ctx, "statements.html", s=found, merchant=merchant, day=day, today=today,
            merchants=office.money.merchants(ctx.scope), lines=lines,
            rates=() if found is None or found.schedule is None else schedule_rates(found.schedule),
            previous=day - timedelta(days=1), following=day + timedelta(days=1),
            page_url="/statements?" + urlencode(query) + "&page=",
            export_url="/statements.csv?" + urlencode(query),
            text_url="/statements.txt?" + urlencode(query), adjustment_labels=ADJUSTMENT_LABELS,
            settled=exception_settlement,
        )  # fmt: skip

    @route("GET", "/statements.txt", Permission.VIEW)
    def statements_text(request: Request, ctx: Ctx) -> Response:
        """The whole statement as ``posbatch clearing statement`` prints it, with its last
        line: cleared, or computed from the records as they are now."""
        merchant, day, found = statement_of(request, ctx)
        if found is None:
            raise ConfigError("merchant_id: choose the merchant of the statement")
        name = f"statement-{merchant}-{day:%Y%m%d}.txt"
        text = f"{render_statement(found)}\n{cleared_note(day, found.cleared)}\n"
        return Response(
            text.encode("utf-8"),
            media_type="text/plain; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @route("GET", "/statements.csv", Permission.VIEW)
    def statements_csv(request: Request, ctx: Ctx) -> Response:
        merchant, day, found = statement_of(request, ctx)
        if found is None:
            raise ConfigError("merchant_id: choose the merchant of the statement")
        body = (CSV_BOM + statement_csv(found)).encode("utf-8")
        name = f"statement-{merchant}-{day:%Y%m%d}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    def fees_page(
        request: Request, ctx: Ctx, status: int = 200, *, form: dict[str, str] | None = None,
        error: str | None = None,
    ) -> Response:  # fmt: skip
        today = office.money.today()
        default = {"effective_from": (today + timedelta(days=1)).isoformat(), "instant": "0.00%"}
        return page(
            request, ctx, "fees.html", status, book=office.money.fee_book(), today=today,
            fields=FEE_FIELDS, form=form or default, error=error,
        )  # fmt: skip

    @route("GET", "/fees", Permission.VIEW_FEES)
    def fees(request: Request, ctx: Ctx) -> Response:
        return fees_page(request, ctx)

    @route("POST", "/fees", Permission.SET_FEES)
    def set_fees(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        values = {key: str(value) for key, value in form.items() if key != "csrf_token"}
        try:
            office.money.set_fees(ctx.actor, values)
        except (ConfigError, BackOfficeError) as exc:
            if isinstance(exc, (Forbidden, NotFound)):
                raise
            shown = {key: clean_text(value, 32) for key, value in values.items()}
            return fees_page(request, ctx, 400, form=shown, error=str(exc))
        return see("/fees", "fees-set")

    # --- users and account -----------------------------------------------------------------

    @route("GET", "/users", Permission.MANAGE_USERS)
    def users(request: Request, ctx: Ctx) -> Response:
        rows = office.staff.users()
        return page(request, ctx, "users.html", rows=rows, roles=[r.value for r in Role],
                    form={}, locked=office.staff.locked_addresses(now=now()))  # fmt: skip

    @route("POST", "/users", Permission.MANAGE_USERS)
    def add_user(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        values = {k: str(form.get(k, "")).strip() for k in ("name", "role", "merchant_id")}
        password, again = str(form.get("password", "")), str(form.get("password_again", ""))
        try:
            if password != again:
                raise ConfigError("the two passwords differ")
            office.staff.add_user(
                ctx.actor, values["name"], values["role"], password,
                merchant_id=values["merchant_id"] or None, now=now(),
            )  # fmt: skip
        except PosbatchError as exc:
            rows = office.staff.users()
            shown = {key: clean_text(value, 64) for key, value in values.items()}  # no card
            return page(request, ctx, "users.html", 400, rows=rows,
                        roles=[r.value for r in Role], form=shown, error=str(exc),
                        locked=office.staff.locked_addresses(now=now()))  # fmt: skip
        return see("/users", "user-added")

    @route("POST", "/users/{name}/active", Permission.MANAGE_USERS)
    def user_active(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        name = request.path_params["name"]
        wanted = str(form.get("active", ""))
        if wanted not in ("0", "1"):
            raise ConfigError("active must be 1 (enable) or 0 (disable)")
        changed = office.staff.set_active(ctx.actor, name, active=wanted == "1", now=now())
        return see("/users", "user-changed" if changed else "user-unchanged")

    @route("POST", "/users/{name}/unlock", Permission.MANAGE_USERS)
    def user_unlock(request: Request, ctx: Ctx) -> Response:
        form_of(request, ctx)
        office.staff.unlock(ctx.actor, request.path_params["name"], now=now())
        return see("/users", "user-changed")

    @route("POST", "/users/unlock-address", Permission.MANAGE_USERS)
    def address_unlock(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        office.staff.unlock_address(ctx.actor, str(form.get("address", "")), now=now())
        return see("/users", "address-unlocked")

    @route("GET", "/account", None)
    def account(request: Request, ctx: Ctx) -> Response:
        return page(request, ctx, "account.html")

    @route("POST", "/account/password", None)
    def password(request: Request, ctx: Ctx) -> Response:
        form = form_of(request, ctx)
        new, again = str(form.get("new_password", "")), str(form.get("new_password_again", ""))
        if new != again:
            raise ConfigError("the two new passwords differ")
        office.staff.change_password(
            ctx.session.user, str(form.get("password", "")), new, address=ctx.address,
            now=now(), keep_token=request.cookies.get(SESSION_COOKIE, ""),
        )  # fmt: skip
        return see("/account", "password")

    return app


def _yuan(amount_fen: int | None) -> str:
    from posbatch.batch.money import format_fen  # noqa: PLC0415

    return "" if amount_fen is None else format_fen(amount_fen)


def _json(value: object) -> str:
    import json  # noqa: PLC0415

    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


NUL_REFUSED: Final = "a value holds a NUL character (\\0): not valid anywhere here"


def _holds_nul(request: Request) -> bool:
    """Whether the path, the query or the form carries a NUL: no id, name or text of the
    console may hold one, and PostgreSQL refuses it in any text parameter — a login named
    ``olga%00`` was a 500, ``/users/sa%00m/active`` a 503 showing the SQL."""
    form: FormData | None = request.state.form
    pairs = [*request.path_params.items(), *request.query_params.multi_items()]
    if form is not None:
        pairs += form.multi_items()
    return any("\0" in str(key) or "\0" in str(value) for key, value in pairs)


def _next(request: Request) -> str:
    return _safe_next(request.query_params.get("next", ""))


def _safe_next(target: str) -> str:
    """Only a path of this site (no scheme, no host, no //): never an open redirect."""
    target = mask_card_numbers(target)
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or len(target) > 512
        or not target.isascii()
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


def _path_terminal(request: Request) -> str:
    terminal_id = terminal_id_param({"terminal_id": request.path_params["terminal_id"]})
    assert terminal_id is not None
    return terminal_id


def _path_int(request: Request, name: str) -> int:
    value = number_param({name: str(request.path_params[name])}, name, 12)
    if value is None:
        raise ConfigError(f"{name}: a number")
    return value


# Each part of the exception queue's page cursor fits a 64-bit column (the money at stake in
# fen, an exception id): a 23-digit part reached the database and came back as a 500.
AFTER_KEY_DIGITS_MAX: Final = 18


def _after_key(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    left, _, right = text.partition("-")
    if not all(
        part.isascii() and part.isdigit() and len(part) <= AFTER_KEY_DIGITS_MAX
        for part in (left, right)
    ):
        raise ConfigError("after: not a page cursor (follow the page's next link)")
    return int(left), int(right)


def _raw(params: Any) -> dict[str, str]:
    """What was typed, for the form to show again after an error (bounded, no card numbers)."""
    from posbatch.backoffice import clean_text  # noqa: PLC0415

    return {key: clean_text(str(value), 64) for key, value in params.items() if key != "after"}
