"""Users, roles, logins and sessions of the back office.

Roles (issue #13's table) — what each may do is :data:`ROLE_PERMISSIONS`, the one place
the web asks:

=========================================  =====  =======  ==================
                                           ops    support  merchant
=========================================  =====  =======  ==================
overview, batches, transactions, exceptions all   all      own merchant only
exceptions' remarks, assignees, staff names ✔      ✔        ✗ (outcome only)
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
work, so nobody can probe which names exist. Failures are counted per (name, client
address), per address and per account (:mod:`posbatch.backoffice._throttle`):
:data:`LOGIN_FAILURES_MAX` lock that name *from that address* for :data:`LOCKOUT_MINUTES`
(a stranger's guesses do not lock the user out of their own desk), an address that fails
too often over any names is throttled, and only a ceiling that takes many addresses to
reach locks the account itself — for a bounded time, with a ``user.locked`` audit row.
A session is a random token in an
HttpOnly cookie; the store keeps only its SHA-256, with a CSRF token of its own, and
ends it after :data:`SESSION_IDLE_MINUTES` without a request or
:data:`SESSION_LIFETIME_HOURS` after login, whichever comes first.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import argon2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.backoffice._audit import Actor, Outcome, record
from posbatch.backoffice._db import aware, naive, read, write
from posbatch.backoffice._text import clean_text
from posbatch.backoffice._throttle import (
    ROWS_MAX,
    RULES,
    Counter,
    Key,
    client_key,
    failed,
)
from posbatch.batch.ids import MERCHANT_ID_CHARS
from posbatch.errors import ConfigError, Forbidden, LoginRefused, NotFound
from posbatch.host import _schema as t
from posbatch.host._clearing import merchant_has_terminal
from posbatch.host.store import HostStore

__all__ = [
    "ACCOUNT_FAILURES_MAX",
    "ADDRESS_FAILURES_MAX",
    "LOCKOUT_MINUTES",
    "LOGIN_FAILURES_MAX",
    "PASSWORD_CHARS_MAX",
    "PASSWORD_CHARS_MIN",
    "ROLE_PERMISSIONS",
    "SESSION_IDLE_MINUTES",
    "SESSION_LIFETIME_HOURS",
    "LockedAddress",
    "Permission",
    "Role",
    "Session",
    "Staff",
    "User",
    "may",
]

PASSWORD_CHARS_MIN: Final = 10
PASSWORD_CHARS_MAX: Final = 128  # bounds the hash work one request can ask for
# Failures of one name from one address that lock that pair, and for how long.
LOGIN_FAILURES_MAX: Final = RULES[Key.PAIR].failures_max
LOCKOUT_MINUTES: Final = int(RULES[Key.PAIR].lockout.total_seconds() // 60)
ADDRESS_FAILURES_MAX: Final = RULES[Key.ADDRESS].failures_max  # any names, one address
ACCOUNT_FAILURES_MAX: Final = RULES[Key.ACCOUNT].failures_max  # one name, any addresses
# PostgreSQL: the login units of work take this advisory lock, so that counting failures
# is serialised there as SQLite's write lock serialises it (read, count, write).
_LOGIN_LOCK_KEY: Final = 0x706F73_6C6F67  # "pos" "log"
SESSION_IDLE_MINUTES: Final = 30
SESSION_LIFETIME_HOURS: Final = 12
# A session's last_seen_at is written at most this often (a page view is not a write).
SESSION_TOUCH_SECONDS: Final = 60
SESSIONS_PER_USER_MAX: Final = 10
LOCKED_ADDRESSES_SHOWN_MAX: Final = 200  # lock rows read for the users page
TOKEN_BYTES: Final = 32
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
LOGIN_REFUSED_TEXT: Final = (
    "登录失败：用户名或密码错误，或因多次失败暂时锁定 / "
    "Login failed: wrong name or password, or locked for a while after repeated failures"
)


@dataclass(frozen=True, slots=True)
class LockedAddress:
    """A client address some login lock holds (as counted: an IPv6 address by its /64)."""

    address: str
    locked_until: datetime | None  # the address's own lock (every name from it); None: none
    names_locked: int  # names locked from this address (each after its own failures)


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
                f"a merchant user needs a merchant id ({MERCHANT_ID_CHARS} letters or digits)"
            )
    elif merchant_id is not None:
        raise ConfigError("only a merchant user has a merchant id")
    check_password_rules(password)
    return user_role


UNKNOWN_MERCHANT: Final = (
    "merchant_id: no terminal of that merchant is registered on this host — check the number "
    "(a new merchant: register its terminal first)"
)


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


def _check_changes_users(actor: Actor, *, command_line: bool = False) -> None:
    """Refuse ``actor`` unless their role manages users (``command_line``: or they are the
    host's command line, which may act where ops cannot log in)."""
    if command_line and actor.role == "cli":
        return
    if not may(actor.role, Permission.MANAGE_USERS):
        raise Forbidden("only ops may change users")


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
            # Names are ASCII (_NAME): lower() is the same on both databases. "Olga" beside
            # "olga" would read as one person in the audit and on the users page.
            taken = connection.execute(
                sa.select(t.users.c.name).where(sa.func.lower(t.users.c.name) == name.lower())
            ).first()
            if taken is not None:
                if taken.name == name:
                    raise ConfigError(f"user {name} exists already")
                raise ConfigError(
                    f"user {taken.name} exists already: a name that differs only in case "
                    "would look like the same person"
                )
            if merchant_id is not None and not merchant_has_terminal(connection, merchant_id):
                # the user would see empty pages: a mistyped id, or a merchant not set up yet
                raise ConfigError(UNKNOWN_MERCHANT)
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

    def set_active(self, actor: Actor, name: str, *, active: bool, now: datetime) -> bool:
        """Disable a user (their sessions end at once) or enable them again; False (nothing
        changed, nothing recorded) when the user already was so — a second click."""
        _check_changes_users(actor)
        if actor.name == name and not active:
            raise ConfigError("you cannot disable yourself")
        with write(self.store) as connection:
            row = self._user_row(connection, name)
            if bool(row.active) == active:
                return False
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
        return True

    def unlock(self, actor: Actor, name: str, *, now: datetime) -> None:
        """Clear a user's failed logins and lock (the account's, and the name's from every
        address; an address's own throttle stays)."""
        _check_changes_users(actor)
        with write(self.store) as connection:
            row = self._user_row(connection, name)
            connection.execute(
                t.users.update()
                .where(t.users.c.user_id == row.user_id)
                .values(failed_logins=0, locked_until=None)
            )
            self._clear_failures(connection, name)
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

    def locked_addresses(self, *, now: datetime) -> list[LockedAddress]:
        """Client addresses a login lock holds now (the address's own throttle, or a name
        from it), newest lock first: the offices behind one address (NAT) that ops may
        free with :meth:`unlock_address`."""
        f = t.login_failures.c
        with read(self.store) as connection:
            rows = connection.execute(
                sa.select(f.kind, f.address, f.locked_until)
                .where(
                    f.kind.in_((Key.PAIR.value, Key.ADDRESS.value)),
                    f.locked_until > naive(now),
                )
                .order_by(f.locked_until.desc())
                .limit(LOCKED_ADDRESSES_SHOWN_MAX)
            ).all()
        found: dict[str, LockedAddress] = {}
        for row in rows:
            held = found.get(row.address) or LockedAddress(row.address, None, 0)
            if row.kind == Key.ADDRESS.value:
                held = dataclasses.replace(held, locked_until=aware(row.locked_until))
            else:
                held = dataclasses.replace(held, names_locked=held.names_locked + 1)
            found[row.address] = held
        return list(found.values())

    def unlock_address(self, actor: Actor, address: str, *, now: datetime) -> str:
        """Let logins from ``address`` start again: its own throttle and every name's lock
        from it are cleared (the ACCOUNT locks stay: :meth:`unlock` frees a user). The
        address as counted (an IPv6 address by its /64) is returned.

        For an office behind one address (NAT), where a colleague's or a stranger's
        failures would otherwise hold everyone until the lock ends — ops behind the same
        address included, so the command line can do it too.
        """
        _check_changes_users(actor, command_line=True)
        where = client_key(address.strip())
        f = t.login_failures.c
        from_there = sa.and_(f.kind.in_((Key.PAIR.value, Key.ADDRESS.value)), f.address == where)
        with write(self.store) as connection:
            rows = connection.execute(
                sa.select(f.kind, f.name, f.failures, f.locked_until).where(from_there)
            ).all()
            if not rows:
                raise NotFound(f"no failed login is counted from address {clean_text(where, 64)}")
            connection.execute(t.login_failures.delete().where(from_there))
            own = next((row for row in rows if row.kind == Key.ADDRESS.value), None)
            record(
                connection, actor, action="address.unlock", target=where,
                outcome=Outcome.DONE, now=now,
                before={
                    "address_failures": 0 if own is None else own.failures,
                    "address_locked_until": None if own is None or own.locked_until is None
                    else str(own.locked_until),
                    "names_counted": sum(1 for row in rows if row.kind == Key.PAIR.value),
                    "names_locked": sum(
                        1 for row in rows
                        if row.kind == Key.PAIR.value and row.locked_until is not None
                        and aware(row.locked_until) > now
                    ),
                },
                after={"address_failures": 0, "names_counted": 0},
            )  # fmt: skip
        return where

    def set_password(self, actor: Actor, name: str, password: str, *, now: datetime) -> None:
        """Give a user a new password (the command line's reset, for a forgotten password):
        their sessions end, their lock is cleared."""
        _check_changes_users(actor, command_line=True)
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
            self._clear_failures(connection, name)
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
        # The current password is checked like a login's, and its failures count like a
        # login's (same keys, same limits): a session's holder (a stolen cookie, an
        # unattended browser) may not try password after password here.
        good = self._verify(row.password_hash, old_password[:PASSWORD_CHARS_MAX])
        new_hash = self.hasher.hash(new_password) if good else None
        with write(self.store) as connection:
            _, refused, detail = self._judge(
                connection, user.name, address, good=good, wrong="wrong current password",
                now=now,
            )  # fmt: skip
            if refused is not None or new_hash is None:
                record(
                    connection, user.actor(address), action="user.password", target=user.name,
                    outcome=Outcome.REFUSED, now=now, detail=detail,
                )  # fmt: skip
                new_hash = None
            else:
                self._new_password(
                    connection, user, new_hash, address=address, keep_token=keep_token, now=now
                )
        if new_hash is None:
            raise ConfigError(
                "the current password is wrong (or the user is locked for a while after "
                "repeated failures)"
            )

    def _new_password(
        self, connection: Connection, user: User, new_hash: str, *, address: str,
        keep_token: str, now: datetime,
    ) -> None:  # fmt: skip
        """Write the new password; end every other session of the user."""
        connection.execute(
            t.users.update()
            .where(t.users.c.user_id == user.user_id)
            .values(password_hash=new_hash, password_changed_at=naive(now))
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

        Every attempt is in the audit log (``login`` done / refused). ``address`` is the
        client's (the socket peer; a proxy's X-Forwarded-For only when the server was told
        to trust that proxy).
        """
        name = name.strip()[:64]
        password = password[:PASSWORD_CHARS_MAX]
        with read(self.store) as connection:
            row = connection.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        # The hash work is done whether or not the user exists (no timing oracle).
        good = self._verify(self._dummy() if row is None else row.password_hash, password)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        csrf_token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + timedelta(hours=SESSION_LIFETIME_HOURS)
        rehash = good and row is not None and self.hasher.check_needs_rehash(row.password_hash)
        new_hash = self.hasher.hash(password) if rehash else None
        with write(self.store) as connection:
            # Judged under the write lock: failures that came in while the password was
            # hashed may have locked the user (or ops disabled them). A right password then
            # opens no session and clears no lock — else many guesses sent at once all get
            # an answer, past LOGIN_FAILURES_MAX.
            user, refused, detail = self._judge(
                connection, name, address, good=good, wrong="wrong password", now=now
            )
            if user is not None and refused is None:
                values: dict[str, object] = {"locked_until": None}  # one that ran out
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
                Actor(name or "-", "-", address) if user is None else user.actor(address),
                action="login",
                target=name or "-",
                outcome=Outcome.DONE if refused is None else Outcome.REFUSED,
                now=now,
                detail=detail,
            )
        if user is None or refused is not None:
            raise LoginRefused(LOGIN_REFUSED_TEXT)
        fresh = dataclasses.replace(user, active=True, locked_until=None)
        return token, Session(fresh, csrf_token, now, expires_at)

    def _judge(
        self, connection: Connection, name: str, address: str, *, good: bool, wrong: str,
        now: datetime,
    ) -> tuple[User | None, str | None, str]:  # fmt: skip
        """Inside a login's unit of work: the user, why the attempt is refused (None: it is
        not) and the audit detail. A failure that may count (an unknown name, a wrong
        password: ``wrong``) is counted under every key of :mod:`._throttle`; one refused
        for a lock or a disabled user is not (a lock is never extended by its attacker)."""
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOGIN_LOCK_KEY)))
        row = connection.execute(sa.select(t.users).where(t.users.c.name == name)).first()
        user = None if row is None else _user(row)
        where = client_key(address)
        counters = self._counters(connection, name, where, account=user is not None)
        pair, from_address = counters.get(Key.PAIR), counters.get(Key.ADDRESS)
        if user is not None and not user.active:
            return user, "disabled", "disabled"
        if user is not None and user.locked_until is not None and user.locked_until > now:
            return user, "locked", "locked (the account, until ops unlock it or the lock ends)"
        if pair is not None and pair.locked(now):
            return user, "locked", "locked (this name from this address)"
        if from_address is not None and from_address.locked(now):
            return user, "locked", "locked (this address: too many failures over any names)"
        if good and user is not None:
            if pair is not None:  # a success clears its own pair, nothing else
                connection.execute(
                    t.login_failures.delete().where(self._key(Key.PAIR, name, where))
                )
            return user, None, ""
        why = "unknown user" if user is None else wrong
        notes = self._count_failure(
            connection, user, name, where=where, counters=counters, address=address, now=now
        )
        return user, why, "; ".join([why, *notes])

    @staticmethod
    def _key(key: Key, name: str, where: str) -> sa.ColumnElement[bool]:
        """The condition that picks one counter's row."""
        f = t.login_failures.c
        named, address = {
            Key.PAIR: (name, where), Key.ADDRESS: ("", where), Key.ACCOUNT: (name, "")
        }[key]  # fmt: skip
        return sa.and_(f.kind == key.value, f.name == named, f.address == address)

    def _counters(
        self, connection: Connection, name: str, where: str, *, account: bool
    ) -> dict[Key, Counter]:
        keys = [Key.PAIR, Key.ADDRESS, *([Key.ACCOUNT] if account else [])]
        rows = connection.execute(
            sa.select(t.login_failures).where(
                sa.or_(*(self._key(key, name, where) for key in keys))
            )
        ).all()
        return {
            Key(row.kind): Counter(
                row.failures,
                aware(row.window_start),
                None if row.locked_until is None else aware(row.locked_until),
            )
            for row in rows
        }

    def _count_failure(
        self, connection: Connection, user: User | None, name: str, *, where: str,
        counters: dict[Key, Counter], address: str, now: datetime,
    ) -> list[str]:  # fmt: skip
        """Count one failure under each key (ACCOUNT for an existing user only), write the
        counters, lock what reached its limit; what was locked, as audit notes."""
        keys = [Key.PAIR, Key.ADDRESS, *([Key.ACCOUNT] if user is not None else [])]
        notes: list[str] = []
        for key in keys:
            rule = RULES[key]
            before = counters.get(key)
            after, locked_now = failed(before, rule, now)
            values = {
                "failures": after.failures,
                "window_start": naive(after.window_start),
                "locked_until": None if after.locked_until is None else naive(after.locked_until),
                "expires_at": naive(after.expires_at(rule)),
            }
            condition = self._key(key, name, where)
            if before is None:
                named = {Key.PAIR: (name, where), Key.ADDRESS: ("", where),
                         Key.ACCOUNT: (name, "")}[key]  # fmt: skip
                connection.execute(
                    t.login_failures.insert().values(
                        kind=key.value, name=named[0], address=named[1], **values
                    )
                )
            else:
                connection.execute(t.login_failures.update().where(condition).values(**values))
            minutes = int(rule.lockout.total_seconds() // 60)
            if locked_now and key is Key.PAIR:
                notes.append(
                    f"{rule.failures_max} failures of this name from this address: "
                    f"locked for {minutes} min"
                )
            elif locked_now and key is Key.ADDRESS:
                notes.append(
                    f"{rule.failures_max} failures from this address over any names: "
                    f"address locked for {minutes} min"
                )
            elif key is Key.ACCOUNT and user is not None:
                until = after.locked_until if locked_now else None
                connection.execute(
                    t.users.update()
                    .where(t.users.c.user_id == user.user_id)
                    .values(
                        failed_logins=rule.failures_max if locked_now else after.failures,
                        **({"locked_until": naive(until)} if until is not None else {}),
                    )
                )
                if locked_now:
                    notes.append(f"account locked for {minutes} min")
                    record(
                        connection,
                        Actor("posbatch", "system", address),
                        action="user.locked",
                        target=user.name,
                        outcome=Outcome.DONE,
                        now=now,
                        detail=(
                            f"{rule.failures_max} failed logins within "
                            f"{int(rule.window.total_seconds() // 60)} min from any addresses: "
                            f"the account is locked for {minutes} min (ops can unlock it)"
                        ),
                    )
        self._prune_failures(connection, now)
        return notes

    @staticmethod
    def _prune_failures(connection: Connection, now: datetime) -> None:
        """Drop counters that mean nothing any more, and hold the rows an attacker can
        create (PAIR, ADDRESS: any name, any address) to ROWS_MAX, the oldest going first."""
        f = t.login_failures.c
        connection.execute(t.login_failures.delete().where(f.expires_at <= naive(now)))
        floating = f.kind.in_((Key.PAIR.value, Key.ADDRESS.value))
        excess = (
            connection.execute(sa.select(sa.func.count()).where(floating)).scalar_one() - ROWS_MAX
        )
        if excess > 0:
            threshold = connection.execute(
                sa.select(f.expires_at)
                .where(floating)
                .order_by(f.expires_at)
                .offset(excess - 1)
                .limit(1)
            ).scalar_one()
            connection.execute(t.login_failures.delete().where(floating, f.expires_at <= threshold))

    def _clear_failures(self, connection: Connection, name: str) -> None:
        """An unlock or a new password: the name's counters (every address) start again."""
        f = t.login_failures.c
        connection.execute(
            t.login_failures.delete().where(
                f.kind.in_((Key.PAIR.value, Key.ACCOUNT.value)), f.name == name
            )
        )

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
