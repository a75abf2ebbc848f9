"""Login throttling: failures counted per (name, address), per address and per account —
so that a stranger's guesses no longer lock a user out of their own desk."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from web_world import LOGIN_TOKEN, PASSWORD, World, log_in

from posbatch.backoffice import (
    ADDRESS_FAILURES_MAX,
    LOCKOUT_MINUTES,
    LOGIN_FAILURES_MAX,
    AuditFilter,
)
from posbatch.backoffice import _staff as staff_module
from posbatch.backoffice._audit import Actor
from posbatch.backoffice._throttle import RULES, Counter, Key, Rule, client_key, failed
from posbatch.errors import Forbidden, LoginRefused, NotFound
from posbatch.host import _schema as t
from posbatch.web import create_app

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
RULE = Rule(5, timedelta(minutes=15), timedelta(minutes=15))


# --- the pure counter ---------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=40 * 60), max_size=60))
def test_a_lock_is_never_extended_and_always_ends(gaps_s: list[int]) -> None:
    """Whatever the failures' timing, a lock begins only at the failures_max-th failure
    within one window, and ends exactly `lockout` after it began (failures while locked
    are not counted)."""
    now, counter = T0, None
    in_window: list[datetime] = []
    for gap_s in gaps_s:
        now += timedelta(seconds=gap_s)
        before = counter
        counter, locked_now = failed(counter, RULE, now)
        if before is not None and before.locked(now):
            assert (counter, locked_now) == (before, False)
            continue
        if before is None or before.window_start + RULE.window <= now:
            in_window = []
        in_window.append(now)
        assert locked_now == (len(in_window) == RULE.failures_max)
        if locked_now:
            assert counter.locked_until == now + RULE.lockout
            in_window = []
        else:
            assert counter.locked_until is None
            assert counter.failures == len(in_window) < RULE.failures_max


def test_the_limits_keep_their_order() -> None:
    """Pair < address < account: the account's own lock needs many addresses."""
    pair, address, account = (RULES[key].failures_max for key in Key)
    assert pair < address < account
    assert account >= 5 * address


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("10.0.0.9", "10.0.0.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same host's /64: one address
        ("::ffff:10.0.0.9", "10.0.0.9"),
        ("testclient", "testclient"),
        ("x" * 200, "x" * 64),
    ],
)
def test_addresses_are_counted_by_host(address: str, counted: str) -> None:
    assert counted == client_key(address)


def test_a_counter_starts_again_after_its_window() -> None:
    counter = Counter(RULE.failures_max - 1, T0, None)
    later = T0 + RULE.window
    assert (Counter(1, later, None), False) == failed(counter, RULE, later)


# --- the library (SQLite and PostgreSQL) --------------------------------------------------


def refuse(world: World, name: str, password: str, address: str) -> None:
    with pytest.raises(LoginRefused):
        world.office.staff.login(name, password, address=address, now=world.clock())


def test_a_strangers_failures_do_not_lock_the_user_out(world: World) -> None:
    """Failures used to lock the ACCOUNT: anyone who knew a name could lock its user out
    from anywhere, whenever they liked."""
    for _ in range(LOGIN_FAILURES_MAX + 3):
        refuse(world, "olga", "a guess of a stranger", "203.0.113.66")
    refuse(world, "olga", PASSWORD, "203.0.113.66")  # the stranger's pair is locked…
    token, _ = world.office.staff.login("olga", PASSWORD, address="10.0.0.1", now=world.clock())
    assert token  # …olga at her own desk is not
    details = [e.detail for e in world.office.audit.search(AuditFilter(action="login"))]
    assert "locked (this name from this address)" in details
    assert (
        f"wrong password; {LOGIN_FAILURES_MAX} failures of this name from this address: "
        f"locked for {LOCKOUT_MINUTES} min"
    ) in details


def test_spraying_one_password_over_many_names_is_throttled_by_address(world: World) -> None:
    """One address trying one password over many names (known or not) stops at the
    address's limit, for every name, even the right password of a real user."""
    for number in range(ADDRESS_FAILURES_MAX):
        refuse(world, f"name{number}", "Spring2026!!", "198.51.100.7")
    refuse(world, "sam", PASSWORD, "198.51.100.7")
    world.office.staff.login("sam", PASSWORD, address="198.51.100.8", now=world.clock())
    world.clock.skip(minutes=LOCKOUT_MINUTES + 1)
    world.office.staff.login("sam", PASSWORD, address="198.51.100.7", now=world.clock())


def test_the_account_ceiling_locks_for_a_bounded_time_and_is_audited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only failures from many addresses lock the account itself: for LOCKOUT_MINUTES,
    with a user.locked row in the audit log, and ops see it on the users page."""
    ceiling = 12
    monkeypatch.setitem(
        RULES, Key.ACCOUNT, Rule(ceiling, timedelta(hours=1), timedelta(minutes=15))
    )
    for number in range(ceiling):
        refuse(world, "sam", "distributed guess", f"192.0.2.{number}")
    user = world.office.staff.user("sam")
    assert user.locked_until == world.clock.now + timedelta(minutes=15)
    refuse(world, "sam", PASSWORD, "10.0.0.1")  # from anywhere, for a while
    locked = world.office.audit.search(AuditFilter(action="user.locked"))
    assert ["sam"] == [entry.target for entry in locked]
    assert "the account is locked for 15 min" in locked[0].detail
    world.clock.skip(minutes=16)
    world.office.staff.login("sam", PASSWORD, address="10.0.0.1", now=world.clock())
    assert world.office.staff.user("sam").locked_until is None


def test_ops_unlock_clears_the_names_locks(world: World) -> None:
    for _ in range(LOGIN_FAILURES_MAX):
        refuse(world, "sam", "my own typo!", "10.0.0.1")
    refuse(world, "sam", PASSWORD, "10.0.0.1")
    world.office.staff.unlock(world.ops(), "sam", now=world.clock())
    world.office.staff.login("sam", PASSWORD, address="10.0.0.1", now=world.clock())


def test_ops_free_an_office_behind_one_address(world: World) -> None:
    """An office behind one address (NAT): a colleague's typos over several names lock the
    address for everyone there, ops too; the lock used to be only waited out. Ops (or the
    command line) unlock the address: logins from it start again, the names' locks from it
    go with it, other addresses' counters stay, and the audit log says who did it."""
    names = ["sam"] * LOGIN_FAILURES_MAX + ["olga"] * (LOGIN_FAILURES_MAX - 1)
    names += [f"temp{number}" for number in range(ADDRESS_FAILURES_MAX - len(names))]
    for name in names:  # sam's pair locks at the last of his; the address at the last
        refuse(world, name, "typo!", "198.51.100.7")
    refuse(world, "olga", "typo!", "198.51.100.9")  # another office's counter
    refuse(world, "max", PASSWORD, "198.51.100.7")  # ops behind the same address: held
    [held] = world.office.staff.locked_addresses(now=world.clock())
    assert ("198.51.100.7", 1) == (held.address, held.names_locked)
    assert held.locked_until is not None
    left_s = (held.locked_until - world.clock.now).total_seconds()
    assert LOCKOUT_MINUTES * 60 - 60 < left_s <= LOCKOUT_MINUTES * 60
    cli = Actor("cli:root", "cli", "local")
    assert "198.51.100.7" == world.office.staff.unlock_address(
        cli, " 198.51.100.7 ", now=world.clock()
    )
    for name in ("max", "sam", "olga"):
        world.office.staff.login(name, PASSWORD, address="198.51.100.7", now=world.clock())
    assert [] == world.office.staff.locked_addresses(now=world.clock())
    f = t.login_failures.c
    with world.store.engine.connect() as connection:
        left = connection.execute(sa.select(f.kind, f.address).order_by(f.kind)).all()
    assert {("address", "198.51.100.9"), ("pair", "198.51.100.9")} <= {tuple(r) for r in left}
    assert all(row.address != "198.51.100.7" for row in left)
    [entry] = world.office.audit.search(AuditFilter(action="address.unlock"))
    assert ("198.51.100.7", "cli:root") == (entry.target, entry.actor)


def test_an_address_unlock_is_for_ops_and_says_what_it_found(world: World) -> None:
    for number in range(3):
        refuse(world, f"name{number}", "x", "2001:db8:1:2::1")
    with pytest.raises(Forbidden):
        world.office.staff.unlock_address(
            Actor("sam", "support", "10.0.0.1"), "2001:db8:1:2::1", now=world.clock()
        )
    with pytest.raises(NotFound, match=r"^no failed login is counted from address 10\.0\.0\.3$"):
        world.office.staff.unlock_address(world.ops(), "10.0.0.3", now=world.clock())
    # an IPv6 address is counted by its /64: any address in it, or the /64 as shown, frees it
    assert "2001:db8:1:2::/64" == world.office.staff.unlock_address(
        world.ops(), "2001:db8:1:2:ffff::9", now=world.clock()
    )


def test_the_counters_cannot_grow_without_bound(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker cycling names and addresses creates counter rows: they are held to
    ROWS_MAX, and rows whose window and lock are over are deleted."""
    monkeypatch.setattr(staff_module, "ROWS_MAX", 30)
    for number in range(60):
        refuse(world, f"cycled{number}", "x", f"10.9.{number // 250}.{number % 250}")
    f = t.login_failures.c
    with world.store.engine.connect() as connection:
        floating = connection.execute(
            sa.select(sa.func.count()).where(f.kind.in_(("pair", "address")))
        ).scalar_one()
    assert floating <= 30
    world.clock.skip(hours=2)
    refuse(world, "someone", "x", "10.8.0.1")
    with world.store.engine.connect() as connection:
        left = connection.execute(sa.select(sa.func.count()).select_from(t.login_failures))
        assert 2 == left.scalar_one()  # the new pair and address: the expired ones are gone


# --- through the app ----------------------------------------------------------------------


def _client_from(world: World, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world.office), client=(host, 50000)),
        base_url="https://console.test",
    )


async def _attempt(
    client: httpx.AsyncClient, name: str, password: str, **headers: str
) -> httpx.Response:
    form = await client.get("/login")
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None
    return await client.post(
        "/login",
        data={"name": name, "password": password, "login_csrf": token[1]},
        headers=headers,
    )


def _alert(answer: httpx.Response) -> str:
    found = re.search(r'role="alert">([^<]+)<', answer.text)
    assert found is not None, answer.text
    return found[1]


async def test_a_stranger_cannot_lock_a_user_out_through_the_console(world: World) -> None:
    """A stranger at another address fails again and again (claiming other addresses in
    X-Forwarded-For, which the console does not trust unless told to): the user still
    logs in from their own address; every refusal reads the same."""
    async with _client_from(world, "203.0.113.66") as stranger, _client_from(
        world, "10.0.0.1"
    ) as olga:  # fmt: skip
        alerts = set()
        for number in range(LOGIN_FAILURES_MAX + 2):
            answer = await _attempt(
                stranger, "olga", f"guess {number}", **{"X-Forwarded-For": f"10.1.1.{number}"}
            )
            assert 401 == answer.status_code
            alerts.add(_alert(answer))
        locked = await _attempt(stranger, "olga", PASSWORD)  # the pair is locked: XFF ignored
        assert 401 == locked.status_code
        alerts.add(_alert(locked))
        unknown = await _attempt(stranger, "nobody-here", PASSWORD)
        alerts.add(_alert(unknown))
        world.office.staff.set_active(world.ops(), "max", active=False, now=world.clock())
        alerts.add(_alert(await _attempt(stranger, "max", PASSWORD)))
        assert 1 == len(alerts)  # wrong, locked, unknown, disabled: the same words
        await log_in(olga, "olga")
        assert 200 == (await olga.get("/account")).status_code
    addresses = {e.address for e in world.office.audit.search(AuditFilter(action="login"))}
    assert "203.0.113.66" in addresses
    assert not any(address.startswith("10.1.1.") for address in addresses)


async def test_ops_see_and_unlock_a_locked_address_on_the_users_page(world: World) -> None:
    async with _client_from(world, "198.51.100.7") as office, _client_from(
        world, "10.0.0.1"
    ) as ops:  # fmt: skip
        for number in range(ADDRESS_FAILURES_MAX):
            assert 401 == (await _attempt(office, f"n{number}", "typo")).status_code
        assert 401 == (await _attempt(office, "sam", PASSWORD)).status_code
        csrf = await log_in(ops, "olga")
        users = await ops.get("/users")
        assert "198.51.100.7" in users.text and "Unlock address" in users.text
        forged = await ops.post("/users/unlock-address", data={"address": "198.51.100.7"})
        assert 403 == forged.status_code  # no CSRF token: refused, nothing changed
        assert 401 == (await _attempt(office, "sam", PASSWORD)).status_code
        freed = await ops.post(
            "/users/unlock-address", data={"csrf_token": csrf, "address": "198.51.100.7"}
        )
        assert 303 == freed.status_code
        page = await ops.get(freed.headers["location"])
        assert "logins from that address may start again" in page.text
        assert "Unlock address" not in page.text
        await log_in(office, "sam")
        unknown = await ops.post(
            "/users/unlock-address", data={"csrf_token": csrf, "address": "6222021234567890128"}
        )
        assert 404 == unknown.status_code
        assert "6222021234567890128" not in unknown.text
