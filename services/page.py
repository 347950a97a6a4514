"""The status page at ``/``: jobs, schedules and the latest heatmap of each MLflow experiment.

Server-rendered HTML from the Jinja2 templates of ``services/templates/``, with no script and
no external asset; Jinja2 escapes every value. A browser signs in with one of the service's
API tokens through the form at ``/`` (``POST /login``) and then holds a session cookie; an
``Authorization: Bearer`` header works as well.

The cookie never holds the token, nor its SHA-256 digest (a short token could be found again
from its digest by trying candidates). It holds an expiry time and an HMAC-SHA256, under a
secret drawn at random when this module is imported, of the token's digest and that time. A
cookie is valid while it has not expired and its HMAC matches one of the configured tokens: a
restarted service, or one whose token was removed, signs everybody out. The cookie is
HttpOnly and SameSite=Strict (a page of another site can neither read it nor make the browser
send it), and Secure when the page was requested over HTTPS.

Why not Starlette's ``SessionMiddleware``: its cookie holds a session dictionary signed under
one secret, valid until it expires whatever happens to the token that opened it, so removing
a token from the settings would not sign out its browsers; binding the cookie to the token
would mean keeping a token-derived value in that dictionary and checking it on every request,
which is what this module does in a few lines. The middleware would also read and rewrite the
cookie on every API request, and add a dependency (itsdangerous).
"""

import base64
import hashlib
import hmac
import logging
import secrets
import shlex
import time
import urllib.parse
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from repalign.errors import RepalignError
from repalign.tracking import heatmap_png, latest_heatmaps
from services import crud
from services.api.deps import BearerDep, SessionDep, StateDep
from services.mlflow_links import public_uri, run_link
from services.result_table import cell_text
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
nav { margin: 0.5rem 0; } dt { font-weight: 600; } dd { margin: 0 0 0.4rem 1.5rem; }
pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; font-size: 13px; }
p.error, pre.error { color: #a1161c; } progress { width: 20rem; }
th a { color: inherit; } .pager a, .pager span { margin-right: 1rem; }
iframe.heatmap { width: 100%; height: 46rem; border: 1px solid #ddd; }
.scroll { overflow-x: auto; } #result-table td { white-space: nowrap; }
"""
# the one inline style is allowed by its hash; no script, nothing from elsewhere, and frames
# only of this service (a job's heatmaps, services.job_pages)
_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; frame-src 'self'; "
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
def status_page(request: Request, viewer: SignedInDep, state: StateDep, session: SessionDep):
    """The status page, or the sign-in form."""
    if not viewer:
        return render(request, "login.html", title="Sign in")
    tracking = state.settings.tracking
    return render(
        request,
        "status.html",
        title="Status",
        signed_in=True,
        jobs=crud.latest_jobs(session, JOBS_SHOWN),
        schedules=crud.schedules(session),
        tracking=tracking,
        mlflow_ui=mlflow_ui_command(tracking),
        heatmaps=_latest_heatmaps(tracking),
    )


@router.post("/login")
async def login(request: Request):
    """Sign in with an API token (form field ``token``): a session cookie and 303 to ``/``."""
    form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0]
    if not token or not token_is_valid(token, request.app.state.service.token_hashes):
        return render(
            request, "login.html", status.HTTP_401_UNAUTHORIZED, title="Sign in", refused=True
        )
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


def _first_line(text):
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _utc_time(moment):
    return "" if moment is None else utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


# Jinja2 escapes every value of the .html templates (autoescape).
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(
    first_line=_first_line,
    utc_time=_utc_time,
    urlencode_part=lambda part: urllib.parse.quote(str(part), safe=""),
    cell=cell_text,
)
templates.env.globals["run_link"] = run_link


def render(request, template, status_code=status.HTTP_200_OK, **context):
    """The template filled with ``context``, with the page's style and `HEADERS`."""
    headers = dict(HEADERS)
    if status_code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    context = {"style": Markup(STYLE), "signed_in": False, **context}  # STYLE is ours, as hashed
    return templates.TemplateResponse(request, template, context, status_code, headers)


def _latest_heatmaps(tracking):
    """``[(experiment, run id, heatmap names)]``, or None when MLflow cannot be read (the rest
    of the page still shows)."""
    try:
        return latest_heatmaps(tracking_uri=tracking)
    except Exception as exc:  # MLflow unreachable
        logger.warning("status page: MLflow could not be read: %s", type(exc).__name__)
        return None


def mlflow_ui_command(tracking):
    """The command that shows the runs of a tracking store that is not a server, or None."""
    if tracking.startswith(("http://", "https://")):
        return None
    return f"mlflow ui --backend-store-uri {shlex.quote(public_uri(tracking))}"
