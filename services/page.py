"""The status page at ``/``: jobs, schedules and the latest heatmap of each MLflow experiment.

Server-rendered HTML with no script and no external asset; every value is escaped. A browser
signs in with one of the service's API tokens through the form at ``/`` (``POST /login``) and
then holds a session cookie; an ``Authorization: Bearer`` header works as well.

The cookie never holds the token, nor its SHA-256 digest (a short token could be found again
from its digest by trying candidates). It holds an expiry time and an HMAC-SHA256, under a
secret drawn at random when this module is imported, of the token's digest and that time. A
cookie is valid while it has not expired and its HMAC matches one of the configured tokens: a
restarted service, or one whose token was removed, signs everybody out. The cookie is
HttpOnly and SameSite=Strict (a page of another site can neither read it nor make the browser
send it), and Secure when the page was requested over HTTPS.
"""

import base64
import hashlib
import hmac
import html
import logging
import secrets
import shlex
import time
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repalign.errors import RepalignError
from repalign.tracking import heatmap_png, latest_heatmaps
from services import crud
from services.api.deps import BearerDep, SessionDep, StateDep
from services.mlflow_links import public_uri, run_link
from services.scheduler import utc
from services.security import token_is_valid
from services.settings import token_hash

logger = logging.getLogger(__name__)

COOKIE = "repalign_session"
SESSION_SECONDS = 12 * 3600
JOBS_SHOWN = 50
_SECRET = secrets.token_bytes(32)

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 2rem 2rem; color: #1b1b1b; }
header { display: flex; align-items: center; justify-content: space-between; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem 0.25rem 0; text-align: left;
         vertical-align: top; }
code { font-size: 13px; } .when { white-space: nowrap; }
.status-succeeded { color: #176a2c; } .status-failed { color: #a1161c; }
.note, .empty { color: #555; }
figure { display: inline-block; margin: 0 2rem 1rem 0; }
img.heatmap { max-width: 100%; height: auto; border: 1px solid #ddd; }
form.login input { width: 24rem; }
"""
# the one inline style is allowed by its hash; no script, and nothing from elsewhere
_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; "
    f"style-src '{_STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


# -- who is signed in ------------------------------------------------------------------------


def session_value(digest, expires):
    """The cookie for the token whose SHA-256 digest is ``digest``, valid until ``expires``."""
    signature = hmac.new(_SECRET, digest + str(expires).encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{signature}"


def session_is_valid(value, hashes, moment=None):
    """Is the cookie ``value`` unexpired at ``moment`` (default now) and signed for one of the
    tokens whose digests are ``hashes``?"""
    expires, _, _ = (value or "").partition(".")
    if not expires.isdigit() or int(expires) <= (moment or time.time()):
        return False
    return any(hmac.compare_digest(value, session_value(h, int(expires))) for h in hashes)


def signed_in(request: Request, credentials: BearerDep) -> bool:
    """Does the request carry a valid bearer token or session cookie? A bearer header that
    is present but invalid is answered 401 at once."""
    hashes = request.app.state.service.token_hashes
    if credentials is not None:
        if token_is_valid(credentials.credentials, hashes):
            return True
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return session_is_valid(request.cookies.get(COOKIE), hashes)


SignedInDep = Annotated[bool, Depends(signed_in)]


def require_viewer(viewer: SignedInDep) -> None:
    if not viewer:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in at / or send a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


# -- routes ----------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def status_page(viewer: SignedInDep, state: StateDep, session: SessionDep):
    """The status page, or the sign-in form."""
    if not viewer:
        return _page("Sign in", _login_form())
    jobs = crud.latest_jobs(session, JOBS_SHOWN)
    schedules = crud.schedules(session)
    tracking = state.settings.tracking
    body = (
        _jobs_section(jobs, tracking) + _schedules_section(schedules) + _heatmaps_section(tracking)
    )
    return _page("Status", body, signed_in=True)


@router.post("/login")
async def login(request: Request):
    """Sign in with an API token (form field ``token``): a session cookie and 303 to ``/``."""
    form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0]
    if not token or not token_is_valid(token, request.app.state.service.token_hashes):
        notice = '<p class="error" role="alert">That token is not valid.</p>'
        return _page("Sign in", notice + _login_form(), status.HTTP_401_UNAUTHORIZED)
    expires = int(time.time()) + SESSION_SECONDS
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        session_value(token_hash(token), expires),
        max_age=SESSION_SECONDS,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout():
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/heatmaps/{run_id}/{name}.png", dependencies=[Depends(require_viewer)])
def heatmap(state: StateDep, run_id: str, name: str):
    """A heatmap artifact of an MLflow run, as PNG (404 if the run or heatmap is unknown)."""
    try:
        content = heatmap_png(run_id, name, tracking_uri=state.settings.tracking)
    except RepalignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    # a finished run's artifacts do not change
    headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(content, media_type="image/png", headers=headers)


# -- the HTML --------------------------------------------------------------------------------


def _e(value):
    return html.escape(str(value), quote=True)


def _page(title, body, status_code=status.HTTP_200_OK, *, signed_in=False):
    logout = (
        '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
        if signed_in
        else ""
    )
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>repalign · {_e(title)}</title><style>{STYLE}</style></head>"
        f"<body><header><h1>repalign</h1>{logout}</header><main>{body}</main></body></html>"
    )
    headers = dict(HEADERS)
    if status_code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return HTMLResponse(document, status_code, headers=headers)


def _login_form():
    return (
        '<form class="login" method="post" action="/login">'
        '<p><label for="token">API token</label><br>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus></p>"
        '<p><button type="submit">Sign in</button></p></form>'
    )


def _table(headings, rows, empty):
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _jobs_section(jobs, tracking):
    rows = []
    for job in jobs:
        error = (job.error or "").strip().splitlines()[:1]
        run = ""
        if job.mlflow_run_id:
            run = f"<code>{_e(job.mlflow_run_id)}</code>"
            link = run_link(tracking, job.mlflow_run_id)
            if link is not None:
                run = f'<a href="{_e(link)}" rel="noreferrer">{run}</a>'
        rows.append(
            f'<tr id="job-{_e(job.id)}"><td><code>{_e(job.id)}</code></td><td>{_e(job.kind)}</td>'
            f'<td class="status status-{_e(job.status)}">{_e(job.status)}</td>'
            f"{_time_cell(job.created_at)}{_time_cell(job.finished_at)}"
            f'<td class="error">{_e(error[0]) if error else ""}</td><td>{run}</td></tr>'
        )
    headings = ("Job", "Kind", "Status", "Created", "Finished", "Error", "MLflow run")
    table = _table(headings, rows, "No jobs yet.")
    note = ""
    if rows and not tracking.startswith(("http://", "https://")):
        command = f"mlflow ui --backend-store-uri {shlex.quote(public_uri(tracking))}"
        note = f'<p class="note">To look at the runs: <code>{_e(command)}</code></p>'
    return f'<section id="jobs"><h2>Jobs</h2>{table}{note}</section>'


def _schedules_section(schedules):
    rows = [
        f'<tr id="schedule-{_e(s.id)}"><td><code>{_e(s.id)}</code></td>'
        f"<td><code>{_e(s.cron)}</code></td><td>{_e(s.timezone)}</td>"
        f"{_time_cell(s.next_run_at)}{_time_cell(s.last_run_at)}</tr>"
        for s in schedules
    ]
    headings = ("Schedule", "Cron", "Time zone", "Next run", "Last run")
    table = _table(headings, rows, "No schedules.")
    return f'<section id="schedules"><h2>Schedules</h2>{table}</section>'


def _heatmaps_section(tracking):
    try:
        found = latest_heatmaps(tracking_uri=tracking)
    except Exception as exc:  # MLflow unreachable: the rest of the page still shows
        logger.warning("status page: MLflow could not be read: %s", type(exc).__name__)
        found = None
    if found is None:
        content = '<p class="empty">MLflow could not be read; see the service log.</p>'
    elif not found:
        content = '<p class="empty">No finished alignment run yet.</p>'
    else:
        content = "".join(_heatmap_figure(*entry) for entry in found)
    return f'<section id="heatmaps"><h2>Latest matrix of each experiment</h2>{content}</section>'


def _heatmap_figure(experiment, run_id, names):
    caption = f"{_e(experiment)}, run <code>{_e(run_id)}</code>"
    if not names:
        return f"<figure><figcaption>{caption}: no heatmap logged</figcaption></figure>"
    name = names[0]
    run, file = (urllib.parse.quote(part, safe="") for part in (run_id, name))
    source = f"/ui/heatmaps/{run}/{file}.png"
    return (
        f'<figure><img class="heatmap" src="{_e(source)}" '
        f'alt="{_e(f"{name} heatmap of experiment {experiment}")}">'
        f"<figcaption>{caption}: {_e(name)}</figcaption></figure>"
    )


def _time_cell(moment):
    text = "" if moment is None else utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<td class="when">{_e(text)}</td>'
