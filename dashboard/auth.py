"""Who may use the dashboard: users with roles in a file of scrypt hashes, login, and a guard on every route.

Every request, Dash's callback and asset endpoints included, is refused without a login; roles rank
viewer < engineer < admin, and actions that change anything check the role on the server.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from flask import Flask, Response, abort, redirect, request, session
from markupsafe import escape
from werkzeug.security import check_password_hash, generate_password_hash

from dashboard import i18n

log = logging.getLogger(__name__)

Role = Literal["viewer", "engineer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "engineer", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
OPEN_PATHS = frozenset({"/login", "/healthz"})
MIN_PASSWORD = 8
# scrypt (the werkzeug default): memory-hard; ~0.15 s per check on these machines
HASH_METHOD = "scrypt"


class UsersError(ValueError):
    """The users file cannot be read or a user change is refused; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


class Users:
    """The users file: ``{"users": {name: {"role": r, "password_hash": h}}}``, mode 600, rewritten atomically.

    Re-read when it changes on disk, so a user added or removed while the dashboard runs takes effect.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return {}
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    doc = json.loads(self.path.read_text(encoding="utf-8"))
                    users = doc["users"]
                    if not isinstance(users, dict):
                        raise TypeError("users is not a mapping")
                    for name, u in users.items():
                        if u.get("role") not in ROLES or not str(u.get("password_hash", "")):
                            raise TypeError(f"user {name!r} needs a role ({', '.join(ROLES)}) and a hash")
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise UsersError(f"{self.path}: not a users file ({exc})") from exc
                self._stamp, self._users = stamp, users
            return self._users

    def names(self) -> list[str]:
        return sorted(self._load())

    def get(self, name: str) -> User | None:
        u = self._load().get(name)
        return User(name, u["role"]) if u else None  # type: ignore[arg-type]

    def check(self, name: str, password: str) -> User | None:
        """The user if the password is right; None otherwise (the same time either way)."""
        u = self._load().get(name)
        h = u["password_hash"] if u else _DUMMY_HASH
        ok = check_password_hash(h, password)
        return User(name, u["role"]) if (u and ok) else None  # type: ignore[arg-type]

    def set(self, name: str, role: Role, password: str) -> None:
        """Add a user or change one's role and password."""
        if not name or len(name) > 64 or any(c.isspace() or c in "/\\:" for c in name):
            raise UsersError("a user name is 1-64 characters without spaces, '/', '\\' or ':'")
        if role not in ROLES:
            raise UsersError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UsersError(f"passwords have at least {MIN_PASSWORD} characters")
        users = dict(self._load())
        users[name] = {"role": role, "password_hash": generate_password_hash(password, HASH_METHOD)}
        self._write(users)

    def remove(self, name: str) -> bool:
        users = dict(self._load())
        if users.pop(name, None) is None:
            return False
        self._write(users)
        return True

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"users": users}, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, self.path)


_DUMMY_HASH = generate_password_hash(secrets.token_hex(16), HASH_METHOD)


def session_key(path: str | Path) -> bytes:
    """The key that signs session cookies: read from ``path``, or made there (mode 600) on first use."""
    p = Path(path)
    try:
        key = p.read_bytes().strip()
        if len(key) >= 32:
            return key
        raise UsersError(f"{p}: a session key needs at least 32 bytes (delete it to make a new one)")
    except FileNotFoundError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def current_user(users: Users) -> User | None:
    """The logged-in user of this request, re-checked against the users file (a removed user is out)."""
    name = session.get("user")
    return users.get(name) if isinstance(name, str) else None


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no host: no open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


LOGIN_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>
body{{font-family:system-ui,"WenQuanYi Zen Hei","Noto Sans CJK SC",sans-serif;background:#10161d;color:#e8edf2;
display:flex;align-items:center;justify-content:center;height:100vh;margin:0}}
form{{background:#1b2530;padding:2rem 2.5rem;border-radius:8px;min-width:20rem}}
h1{{font-size:1.3rem;margin:0 0 .3rem}} p.tag{{color:#8fa3b5;font-size:.8rem;margin:0 0 1.2rem}}
label{{display:block;margin:.8rem 0 .2rem}} input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}
button{{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem}} .err{{color:#ff7b72}}
a{{color:#8fc1ff}}
</style></head><body>
<form method="post" action="/login">
<h1>{title}</h1><p class="tag">{tagline}</p>
<p class="err" id="login-error">{error}</p>
<input type="hidden" name="next" value="{next}">
<label for="username">{user}</label><input id="username" name="username" autocomplete="username" autofocus>
<label for="password">{password}</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<button id="login-submit" type="submit">{login}</button>
<p><a id="login-lang" href="/login?lang={other}&next={next_q}">{switch}</a></p>
</form></body></html>"""


def install(server: Flask, users: Users, *, key: bytes, secure_cookies: bool, session_hours: float) -> None:
    """Put the login routes and the guard on ``server``, in front of everything Dash registered."""
    server.config.update(
        SECRET_KEY=key,
        SESSION_COOKIE_NAME="shopfloor_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=session_hours),
    )

    def guard() -> Response | None:
        if request.path in OPEN_PATHS:
            return None
        if current_user(users) is not None:
            return None
        if request.method == "GET" and not request.path.startswith(("/_dash", "/_reload", "/assets")):
            target = request.full_path.rstrip("?")
            return redirect("/login?next=" + quote(target, safe=""))  # type: ignore[return-value]
        abort(401)

    # Dash adds its own before_request hooks when it is made: the guard goes first, before any of them
    server.before_request_funcs.setdefault(None, []).insert(0, guard)

    def page(error: str = "", status: int = 200) -> Response:
        lang = request.args.get("lang") if request.args.get("lang") in i18n.LANGS else i18n.current()
        nxt = _safe_next(request.values.get("next"))
        html = LOGIN_PAGE.format(
            lang="zh-CN" if lang == "zh" else "en",
            title=escape(i18n.t("app.title", lang)),
            tagline=escape(i18n.t("app.tagline", lang)),
            error=escape(error),
            next=escape(nxt),
            next_q=quote(nxt, safe=""),
            user=i18n.t("auth.user", lang),
            password=i18n.t("auth.password", lang),
            login=i18n.t("auth.login", lang),
            other="en" if lang == "zh" else "zh",
            switch=i18n.t("lang.switch", lang),
        )
        resp = Response(html, status=status, mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        if request.args.get("lang") in i18n.LANGS:
            resp.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="Lax", secure=secure_cookies)
        return resp

    def login() -> Response:
        if request.method == "GET":
            return page()
        name = request.form.get("username", "")
        user = users.check(name, request.form.get("password", ""))
        if user is None:
            log.warning("dashboard: failed login for %r from %s", name[:64], request.remote_addr)
            return page(i18n.t("auth.failed"), 401)
        session.clear()
        session["user"] = user.name
        session.permanent = True
        log.info("dashboard: %s (%s) logged in from %s", user.name, user.role, request.remote_addr)
        return redirect(_safe_next(request.form.get("next")))  # type: ignore[return-value]

    def logout() -> Response:
        session.clear()
        return redirect("/login")  # type: ignore[return-value]

    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    server.add_url_rule("/login", "shopfloor_login", login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "shopfloor_logout", logout, methods=["GET", "POST"])
    server.add_url_rule("/healthz", "shopfloor_healthz", healthz)

    @server.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp
