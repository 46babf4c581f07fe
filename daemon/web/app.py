"""The console's Starlette application: its routes, the guard every request passes, rendering.

Every page is a view of `views.py` rendered twice: as HTML under its path and as JSON under
`/api/` + its path, from one dict. Pages read the store, so their endpoints are plain
functions Starlette runs in its thread pool; nothing here blocks the event loop.

The guard (`_Guard`, outermost) answers every method other than GET and HEAD with 405,
except on /login and /logout; refuses a request body over MAX_BODY; adds the security
headers to every answer; and turns an unexpected error into a 500 and one log line.
"""

import functools
import urllib.parse
from collections.abc import Callable
from importlib import resources

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from daemon.web import views
from daemon.web.auth import LoginRefused, StaffAuth, StaffSession, new_token, same_token
from daemon.web.charts import runs_chart
from daemon.web.formatting import FILTERS

log = structlog.get_logger("dropd.web")

SESSION_COOKIE = "dropd_session"
LOGIN_COOKIE = "dropd_login"
"""The login form's CSRF token, before there is a session (double-submit: cookie and field)."""
MAX_BODY = 8192
"""Bytes a request body may have: the login and logout forms are a few hundred."""
UNSAFE_METHODS_ALLOWED = ("/login", "/logout")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("daemon.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["runs_chart"] = runs_chart
    env.globals["urlencode"] = urllib.parse.urlencode
    return env


@functools.cache
def _stylesheet() -> bytes:
    return resources.files("daemon.web").joinpath("static/console.css").read_bytes()


class _Guard:
    """Pure ASGI middleware: methods, body size, headers, errors (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD") and scope["path"] not in UNSAFE_METHODS_ALLOWED:
            allow = "GET, HEAD"
            await self._plain(send, 405, "Method not allowed: the console only reads.\n", [(b"allow", allow.encode())])
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            await self._plain(send, 413, "Request body too large.\n")
            return
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise _BodyTooLarge
            return message

        started = False

        async def secured_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, bounded_receive, secured_send)
        except _BodyTooLarge:
            if not started:
                await self._plain(send, 413, "Request body too large.\n")
        except Exception as exc:
            log.error("web.request_failed", method=scope["method"], path=scope["path"],
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            if not started:
                await self._plain(send, 500, "The console failed to answer; the daemon's log says why.\n")

    @staticmethod
    async def _plain(send, status: int, text: str, headers=()) -> None:
        body = text.encode()
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                        *headers, *SECURITY_HEADERS],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _local_path(target: str) -> str:
    """A redirect target after login: a path on this site, never another site (`//evil`)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def build_app(console: views.Console, auth: StaffAuth, secure_cookies: Callable[[], bool]) -> _Guard:
    """The console; `secure_cookies()`: mark cookies Secure (HTTPS, or https behind a proxy)."""

    def render(request: Request, template: str, data: dict, session: StaffSession | None, status: int = 200):
        if request.url.path.startswith("/api/"):
            return JSONResponse(data, status_code=status)
        page = _templates().get_template(template).render(
            **data, staff=session.staff.name if session else None, csrf=session.csrf if session else "",
            path=request.url.path,
        )  # fmt: skip
        return Response(page, status_code=status, media_type="text/html; charset=utf-8")

    def staff_page(template: str, view: Callable[[Request, StaffSession], dict]):
        """An endpoint for a page only a logged-in staff member sees (HTML and JSON)."""

        def endpoint(request: Request):
            session = auth.session(request.cookies.get(SESSION_COOKIE))
            if session is None:
                if request.url.path.startswith("/api/"):
                    return JSONResponse({"error": "log in first: POST /login"}, status_code=401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), status_code=303)
            try:
                return render(request, template, view(request, session), session)
            except views.NotFound as missing:
                return render(request, "missing.html", {"error": str(missing)}, session, status=404)
            except views.BadRequest as bad:
                return render(request, "missing.html", {"error": str(bad)}, session, status=400)

        return endpoint

    def errors_csv(request: Request):
        session = auth.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return PlainTextResponse("log in first\n", status_code=401)
        run_id = request.path_params["run_id"]
        try:
            path = views.error_file(console, session.staff, run_id)
        except views.NotFound as missing:
            return PlainTextResponse(f"{missing}\n", status_code=404)
        return FileResponse(path, media_type="text/csv; charset=utf-8", filename=f"run-{run_id}-errors.csv")

    def cookie(response: Response, name: str, value: str, path: str = "/", max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                            secure=secure_cookies())  # fmt: skip

    def login_form(request: Request, error: str = "", status: int = 200) -> Response:
        token = new_token()
        page = (
            _templates()
            .get_template("login.html")
            .render(
                csrf=token,
                error=error,
                next=_local_path(request.query_params.get("next", "/")),
                staff=None,
                path="/login",
            )
        )
        response = Response(page, status_code=status, media_type="text/html; charset=utf-8")
        cookie(response, LOGIN_COOKIE, token, path="/login")
        return response

    async def login(request: Request):
        if request.method != "POST":
            return login_form(request)
        form = await request.form(max_files=0, max_fields=8)
        if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
            return login_form(request, "The form expired; log in again.", 403)
        username, password = str(form.get("username", ""))[:128], str(form.get("password", ""))[:1024]
        address = _client(request)
        try:
            token = await run_in_threadpool(auth.login, username, password, address)
        except LoginRefused:
            return login_form(request, "Wrong user name or password, or too many attempts: try again later.", 403)
        response = RedirectResponse(_local_path(str(form.get("next", "/"))), status_code=303)
        cookie(response, SESSION_COOKIE, token, max_age=int(console.config().web.session_lifetime))
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request):
        session = await run_in_threadpool(auth.session, request.cookies.get(SESSION_COOKIE))
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if request.method != "POST":
            return render(request, "logout.html", {}, session)
        form = await request.form(max_files=0, max_fields=8)
        if not same_token(str(form.get("csrf", "")), session.csrf):
            return render(request, "missing.html", {"error": "The form expired; log out again."}, session, status=403)
        await run_in_threadpool(auth.logout, session, _client(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure_cookies())
        return response

    def stylesheet(request: Request):
        return Response(_stylesheet(), media_type="text/css; charset=utf-8")

    pages = [
        ("/", "dashboard.html", lambda r, s: views.dashboard(console, s.staff)),
        ("/runs", "runs.html", lambda r, s: views.runs(console, s.staff, views.read_filter(r.query_params))),
        ("/runs/{run_id:int}", "run.html", lambda r, s: views.run(console, s.staff, r.path_params["run_id"])),
        ("/partners", "partners.html", lambda r, s: views.partners(console, s.staff)),
        ("/partners/{name}", "partner.html", lambda r, s: views.partner(console, s.staff, r.path_params["name"])),
        ("/feeds/{name}", "feed.html", lambda r, s: views.feed(console, s.staff, r.path_params["name"])),
    ]
    routes = [Route(path, staff_page(template, view), methods=["GET"]) for path, template, view in pages]
    routes += [Route("/api" + path, staff_page(template, view), methods=["GET"]) for path, template, view in pages]
    routes += [
        Route("/runs/{run_id:int}/errors.csv", errors_csv, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/static/console.css", stylesheet, methods=["GET"]),
    ]
    return _Guard(Starlette(routes=routes))
