"""Users, roles, logins and sessions of the back office.

Roles (issue #13's table) — what each may do is :data:`ROLE_PERMISSIONS`, the one place
the web asks:

=========================================  =====  =======  ==================
                                           ops    support  merchant
=========================================  =====  =======  ==================
overview, batches, transactions, exceptions all   all      own merchant only
resolve exceptions                         ✔      ✔        ✗
register/suspend terminals, advance batch  ✔      ✗        ✗
users                                      ✔      ✗        ✗
audit log                                  ✔      read     ✗
support desk (host-side diagnosis)         ✔      ✔        ✗
statements (对账单)                          all   all      own merchant only
fee schedules and terms: view              ✔      ✔        ✗
fee schedules: set (from a coming day)     ✔      ✗        ✗
=========================================  =====  =======  ==================

Passwords are argon2id hashes (argon2-cffi). A login that fails — unknown name, wrong
password, disabled user, locked user — gets the same words and costs the same hash
work, so nobody can probe which names exist. :data:`LOGIN_FAILURES_MAX` failures in a
row lock the user for :data:`LOCKOUT_MINUTES`. A session is a random token in an
HttpOnly cookie; the store keeps only its SHA-256, with a CSRF token of its own, and
ends it after :data:`SESSION_IDLE_MINUTES` without a request or
:data:`SESSION_LIFETIME_HOURS` after login, whichever comes first.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NoReturn

import argon2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.backoffice._audit import Actor, Outcome, record
from posbatch.backoffice._db import aware, naive, read, write
from posbatch.backoffice._text import clean_text
from posbatch.batch.ids import MERCHANT_ID_CHARS
from posbatch.errors import ConfigError, Forbidden, LoginRefused, NotFound
from posbatch.host import _schema as t
from posbatch.host.store import HostStore

__all__ = [
    "LOCKOUT_MINUTES",
    "LOGIN_FAILURES_MAX",
    "PASSWORD_CHARS_MAX",
    "PASSWORD_CHARS_MIN",
    "ROLE_PERMISSIONS",
    "SESSION_IDLE_MINUTES",
    "SESSION_LIFETIME_HOURS",
    "Permission",
    "Role",
    "Session",
    "Staff",
    "User",
    "may",
]

PASSWORD_CHARS_MIN: Final = 10
PASSWORD_CHARS_MAX: Final = 128  # bounds the hash work one request can ask for
LOGIN_FAILURES_MAX: Final = 5
LOCKOUT_MINUTES: Final = 15
SESSION_IDLE_MINUTES: Final = 30
SESSION_LIFETIME_HOURS: Final = 12
# A session's last_seen_at is written at most this often (a page view is not a write).
SESSION_TOUCH_SECONDS: Final = 60
SESSIONS_PER_USER_MAX: Final = 10
TOKEN_BYTES: Final = 32
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
LOGIN_REFUSED_TEXT: Final = (
    "登录失败：用户名或密码错误，或因多次失败暂时锁定 / "
    "Login failed: wrong name or password, or locked for a while after repeated failures"
)


class Role(enum.StrEnum):
    OPS = "ops"
    SUPPORT = "support"
    MERCHANT = "merchant"


class Permission(enum.StrEnum):
    VIEW = "view"  # overview, terminals, batches, transactions, exceptions (merchant: own)
    RESOLVE_EXCEPTIONS = "resolve-exceptions"
    MANAGE_TERMINALS = "manage-terminals"  # register, suspend/resume, advance batch
    MANAGE_USERS = "manage-users"
    READ_AUDIT = "read-audit"
    EXPORT_AUDIT = "export-audit"
    SUPPORT_DESK = "support-desk"
    VIEW_FEES = "view-fees"  # fee schedules and terms, every merchant's
    SET_FEES = "set-fees"  # a merchant's fee schedule from a coming trading day


ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.OPS: frozenset(Permission),
    Role.SUPPORT: frozenset(
        {
            Permission.VIEW,
            Permission.RESOLVE_EXCEPTIONS,
            Permission.READ_AUDIT,
            Permission.SUPPORT_DESK,
            Permission.VIEW_FEES,
        }
    ),
    Role.MERCHANT: frozenset({Permission.VIEW}),
}


def may(role: str, permission: Permission) -> bool:
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    name: str
    role: Role
    merchant_id: str | None  # a merchant user sees this merchant's data only
    active: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime

    def may(self, permission: Permission) -> bool:
        return may(self.role, permission)

    def actor(self, address: str) -> Actor:
        return Actor(self.name, self.role.value, address, self.merchant_id)


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    created_at: datetime
    expires_at: datetime  # absolute end; the idle end moves with each request


def _user(row: Any) -> User:
    """A users row (or a row holding its columns) as a User."""
    return User(
        user_id=row.user_id,
        name=row.name,
        role=Role(row.role),
        merchant_id=row.merchant_id,
        active=bool(row.active),
        failed_logins=row.failed_logins,
        locked_until=None if row.locked_until is None else aware(row.locked_until),
        created_at=aware(row.created_at),
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_new_user(name: str, role: str, password: str, *, merchant_id: str | None) -> Role:
    """The role of a new user; ConfigError for a bad name, role, merchant id or password.

    Pure: the CLI checks before it opens (or makes) a store, so a refused user leaves
    nothing behind.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            "a user name is 1..64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    if clean_text(name, len(name)) != name:
        raise ConfigError("a user name may not look like a card number")
    try:
        user_role = Role(role)
    except ValueError:
        raise ConfigError("the role must be ops, support or merchant") from None
    if user_role == Role.MERCHANT:
        if (
            merchant_id is None
            or len(merchant_id) != MERCHANT_ID_CHARS
            or not (merchant_id.isascii() and merchant_id.isalnum())
        ):
            raise ConfigError(
                f"a merchant user needs --merchant-id ({MERCHANT_ID_CHARS} letters or digits)"
            )
    elif merchant_id is not None:
        raise ConfigError("only a merchant user has a merchant id")
    check_password_rules(password)
    return user_role


def check_password_rules(password: str) -> None:
    """ConfigError unless ``password`` is PASSWORD_CHARS_MIN..MAX printable characters."""
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise ConfigError(
            f"the password must be {PASSWORD_CHARS_MIN}..{PASSWORD_CHARS_MAX} characters"
        )
    if not password.isprintable():
        raise ConfigError("the password must be printable characters only")


# Every request asks for its session: the statement is built once.
_SESSION_QUERY: Final = (
    sa.select(
        t.users,
        t.sessions.c.csrf_token,
        t.sessions.c.created_at.label("session_created_at"),
        t.sessions.c.last_seen_at,
        t.sessions.c.expires_at,
    )
    .join(t.users, t.users.c.user_id == t.sessions.c.user_id)
    .where(t.sessions.c.token_sha256 == sa.bindparam("key"))
)


class Staff:
    """The users and sessions of one host store.

    ``hasher`` is argon2-cffi's :class:`argon2.PasswordHasher` (its RFC 9106 low-memory
    profile by default); tests pass a cheaper one.
    """

    def __init__(self, store: HostStore, *, hasher: argon2.PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or argon2.PasswordHasher()
        self._dummy_hash: str | None = None

    # --- users ---------------------------------------------------------------------------

    def add_user(
        self,
        actor: Actor,
        name: str,
        role: str,
        password: str,
        *,
        merchant_id: str | None = None,
        now: datetime,
    ) -> User:
        """A new, active user. ConfigError for a bad name/role/password; BackOfficeError
        (ConfigError) if the name is taken."""
        user_role = check_new_user(name, role, password, merchant_id=merchant_id)
        password_hash = self.hasher.hash(password)
        with write(self.store) as connection:
            taken = connection.execute(
                sa.select(t.users.c.user_id).where(t.users.c.name == name)
            ).first()
            if taken is not None:
                raise ConfigError(f"user {name} exists already")
            user_id = connection.execute(
                t.users.insert()
                .values(
                    name=name,
                    role=user_role.value,
                    merchant_id=merchant_id,
                    password_hash=password_hash,
                    active=True,
                    failed_logins=0,
                    locked_until=None,
                    created_at=naive(now),
                    password_changed_at=naive(now),
                )
                .returning(t.users.c.user_id)
            ).scalar_one()
            record(
                connection,
                actor,
                action="user.add",
                target=name,
                outcome=Outcome.DONE,
                now=now,
                after={"name": name, "role": user_role.value, "merchant_id": merchant_id},
            )
        return User(int(user_id), name, user_role, merchant_id, True, 0, None, aware(now))

    def users(self) -> list[User]:
        with read(self.store) as connection:
            rows = connection.execute(sa.select(t.users).order_by(t.users.c.name)).all()
        return [_user(row) for row in rows]

    def user(self, name: str) -> User:
        with read(self.store) as connection:
            row = connection.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {clean_text(name, 64)}")
        return _user(row)

    def set_active(self, actor: Actor, name: str, *, active: bool, now: datetime) -> None:
        """Disable a user (their sessions end at once) or enable them again."""
        if not may(actor.role, Permission.MANAGE_USERS):
            raise Forbidden("only ops may change users")
        if actor.name == name and not active:
            raise ConfigError("you cannot disable yourself")
        with write(self.store) as connection:
            row = self._user_row(connection, name)
            connection.execute(
                t.users.update().where(t.users.c.user_id == row.user_id).values(active=active)
            )
            if not active:
                connection.execute(t.sessions.delete().where(t.sessions.c.user_id == row.user_id))
            record(
                connection,
                actor,
                action="user.enable" if active else "user.disable",
                target=name,
                outcome=Outcome.DONE,
                now=now,
                before={"active": bool(row.active)},
                after={"active": active},
            )

    def unlock(self, actor: Actor, name: str, *, now: datetime) -> None:
        """Clear a user's failed logins and lock."""
        if not may(actor.role, Permission.MANAGE_USERS):
            raise Forbidden("only ops may change users")
        with write(self.store) as connection:
            row = self._user_row(connection, name)
            connection.execute(
                t.users.update()
                .where(t.users.c.user_id == row.user_id)
                .values(failed_logins=0, locked_until=None)
            )
            record(
                connection,
                actor,
                action="user.unlock",
                target=name,
                outcome=Outcome.DONE,
                now=now,
                before={
                    "failed_logins": row.failed_logins,
                    "locked_until": None if row.locked_until is None else str(row.locked_until),
                },
                after={"failed_logins": 0, "locked_until": None},
            )

    def set_password(self, actor: Actor, name: str, password: str, *, now: datetime) -> None:
        """Give a user a new password (the command line's reset, for a forgotten password):
        their sessions end, their lock is cleared."""
        if actor.role != "cli" and not may(actor.role, Permission.MANAGE_USERS):
            raise Forbidden("only ops may change users")
        check_password_rules(password)
        new_hash = self.hasher.hash(password)
        with write(self.store) as connection:
            row = self._user_row(connection, name)
            connection.execute(
                t.users.update()
                .where(t.users.c.user_id == row.user_id)
                .values(
                    password_hash=new_hash,
                    password_changed_at=naive(now),
                    failed_logins=0,
                    locked_until=None,
                )
            )
            connection.execute(t.sessions.delete().where(t.sessions.c.user_id == row.user_id))
            record(
                connection, actor, action="user.set-password", target=name,
                outcome=Outcome.DONE, now=now,
            )  # fmt: skip

    def change_password(
        self,
        user: User,
        old_password: str,
        new_password: str,
        *,
        address: str,
        now: datetime,
        keep_token: str = "",
    ) -> None:
        """The user's own password; every other session of theirs ends (all but the one
        of ``keep_token``, the cookie of the request that changes it)."""
        check_password_rules(new_password)
        with read(self.store) as connection:
            row = self._user_row(connection, user.name)
        # The current password is checked like a login's: a session's holder (a stolen
        # cookie, an unattended browser) may not try password after password here.
        current = _user(row)
        locked = current.locked_until is not None and current.locked_until > now
        if not self._verify(row.password_hash, old_password[:PASSWORD_CHARS_MAX]) or locked:
            self._failed(
                current, "locked" if locked else "wrong current password", address, now,
                count=not locked, action="user.password",
                error=ConfigError(
                    "the current password is wrong (or the user is locked for a while after "
                    "repeated failures)"
                ),
            )  # fmt: skip
        new_hash = self.hasher.hash(new_password)
        with write(self.store) as connection:
            connection.execute(
                t.users.update()
                .where(t.users.c.user_id == user.user_id)
                .values(password_hash=new_hash, password_changed_at=naive(now), failed_logins=0)
            )
            # Whoever else holds a session of this user (a stolen cookie, a shared computer)
            # loses it with the old password.
            connection.execute(
                t.sessions.delete().where(
                    t.sessions.c.user_id == user.user_id,
                    t.sessions.c.token_sha256 != _token_hash(keep_token),
                )
            )
            record(
                connection,
                user.actor(address),
                action="user.password",
                target=user.name,
                outcome=Outcome.DONE,
                now=now,
            )

    def _user_row(self, connection: Connection, name: str) -> Any:
        row = connection.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {clean_text(name, 64)}")
        return row

    # --- login and sessions --------------------------------------------------------------

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        return self._dummy_hash

    def login(
        self, name: str, password: str, *, address: str, now: datetime
    ) -> tuple[str, Session]:
        """A new session (its cookie token and what it holds), or LoginRefused.

        Every attempt is in the audit log (``login`` done / refused).
        """
        name = name.strip()[:64]
        password = password[:PASSWORD_CHARS_MAX]
        with read(self.store) as connection:
            row = connection.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        # The hash work is done whether or not the user exists (no timing oracle).
        good = self._verify(self._dummy() if row is None else row.password_hash, password)
        anonymous = Actor(name or "-", "-", address)
        if row is None:
            self._refuse(anonymous, name, "unknown user", now)
        user = _user(row)
        locked = user.locked_until is not None and user.locked_until > now
        if not user.active or locked or not good:
            why = "disabled" if not user.active else "locked" if locked else "wrong password"
            self._failed(user, why, address, now, count=not locked and user.active)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        csrf_token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + timedelta(hours=SESSION_LIFETIME_HOURS)
        rehash = self.hasher.check_needs_rehash(row.password_hash)
        new_hash = self.hasher.hash(password) if rehash else None
        refused: str | None = None
        with write(self.store) as connection:
            # Read again under the write lock: failures that came in while the password was
            # hashed may have locked the user (or ops disabled them). A right password then
            # opens no session and clears no lock — else many guesses sent at once all get
            # an answer, past LOGIN_FAILURES_MAX.
            current = _user(self._user_row(connection, user.name))
            if not current.active:
                refused = "disabled"
            elif current.locked_until is not None and current.locked_until > now:
                refused = "locked"
            if refused is None:
                values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
                if new_hash is not None:
                    values["password_hash"] = new_hash
                connection.execute(
                    t.users.update().where(t.users.c.user_id == user.user_id).values(**values)
                )
                self._prune_sessions(connection, user.user_id, now)
                connection.execute(
                    t.sessions.insert().values(
                        token_sha256=_token_hash(token),
                        user_id=user.user_id,
                        csrf_token=csrf_token,
                        address=address[:64],
                        created_at=naive(now),
                        last_seen_at=naive(now),
                        expires_at=naive(expires_at),
                    )
                )
            record(
                connection,
                user.actor(address),
                action="login",
                target=user.name,
                outcome=Outcome.DONE if refused is None else Outcome.REFUSED,
                now=now,
                detail="" if refused is None else refused,
            )
        if refused is not None:
            raise LoginRefused(LOGIN_REFUSED_TEXT)
        fresh = User(
            user.user_id, user.name, user.role, user.merchant_id, True, 0, None, user.created_at
        )
        return token, Session(fresh, csrf_token, now, expires_at)

    def _refuse(self, actor: Actor, name: str, why: str, now: datetime) -> NoReturn:
        with write(self.store) as connection:
            record(
                connection,
                actor,
                action="login",
                target=name or "-",
                outcome=Outcome.REFUSED,
                now=now,
                detail=why,
            )
        raise LoginRefused(LOGIN_REFUSED_TEXT)

    def _failed(
        self,
        user: User,
        why: str,
        address: str,
        now: datetime,
        *,
        count: bool,
        action: str = "login",
        error: Exception | None = None,
    ) -> NoReturn:
        """Record a refused ``action`` (a login, or the current password of a password
        change: one counter of failures in a row), lock the user at LOGIN_FAILURES_MAX, and
        raise ``error`` (LoginRefused by default)."""
        with write(self.store) as connection:
            detail = why
            if count:
                # Counted in the database (two processes' failures both count).
                connection.execute(
                    t.users.update()
                    .where(t.users.c.user_id == user.user_id)
                    .values(failed_logins=t.users.c.failed_logins + 1)
                )
                failures = connection.execute(
                    sa.select(t.users.c.failed_logins).where(t.users.c.user_id == user.user_id)
                ).scalar_one()
                if failures >= LOGIN_FAILURES_MAX:
                    until = now + timedelta(minutes=LOCKOUT_MINUTES)
                    connection.execute(
                        t.users.update()
                        .where(t.users.c.user_id == user.user_id)
                        .values(failed_logins=0, locked_until=naive(until))
                    )
                    detail = (
                        f"{why}; {failures} failures in a row: locked for {LOCKOUT_MINUTES} min"
                    )
            record(
                connection,
                user.actor(address),
                action=action,
                target=user.name,
                outcome=Outcome.REFUSED,
                now=now,
                detail=detail,
            )
        raise error or LoginRefused(LOGIN_REFUSED_TEXT)

    def _prune_sessions(self, connection: Connection, user_id: int, now: datetime) -> None:
        """Drop the user's ended sessions, and the oldest beyond SESSIONS_PER_USER_MAX - 1."""
        s = t.sessions.c
        idle_since = naive(now - timedelta(minutes=SESSION_IDLE_MINUTES))
        connection.execute(
            t.sessions.delete().where(
                s.user_id == user_id,
                sa.or_(s.expires_at <= naive(now), s.last_seen_at <= idle_since),
            )
        )
        keep = (
            connection.execute(
                sa.select(s.token_sha256)
                .where(s.user_id == user_id)
                .order_by(s.created_at.desc())
                .limit(SESSIONS_PER_USER_MAX - 1)
            )
            .scalars()
            .all()
        )
        connection.execute(
            t.sessions.delete().where(s.user_id == user_id, s.token_sha256.not_in(keep))
        )

    def session(self, token: str, *, now: datetime) -> Session | None:
        """The live session of this cookie token, or None (unknown, ended, user disabled)."""
        if not token or len(token) > 2 * TOKEN_BYTES + 16:
            return None
        key = _token_hash(token)
        s = t.sessions.c
        with read(self.store) as connection:
            row = connection.execute(_SESSION_QUERY, {"key": key}).first()
        if row is None or not row.active:
            return None
        last_seen = aware(row.last_seen_at)
        expires_at = aware(row.expires_at)
        if expires_at <= now or last_seen + timedelta(minutes=SESSION_IDLE_MINUTES) <= now:
            return None
        if now - last_seen >= timedelta(seconds=SESSION_TOUCH_SECONDS):
            with write(self.store) as connection:
                connection.execute(
                    t.sessions.update().where(s.token_sha256 == key).values(last_seen_at=naive(now))
                )
        return Session(_user(row), row.csrf_token, aware(row.session_created_at), expires_at)

    def logout(self, token: str, *, address: str, now: datetime) -> None:
        """End the session of this token (nothing if there is none)."""
        key = _token_hash(token)
        with write(self.store) as connection:
            row = connection.execute(
                sa.select(t.users)
                .join(t.sessions, t.sessions.c.user_id == t.users.c.user_id)
                .where(t.sessions.c.token_sha256 == key)
            ).first()
            if row is None:
                return
            connection.execute(t.sessions.delete().where(t.sessions.c.token_sha256 == key))
            record(
                connection,
                _user(row).actor(address),
                action="logout",
                target=row.name,
                outcome=Outcome.DONE,
                now=now,
            )
