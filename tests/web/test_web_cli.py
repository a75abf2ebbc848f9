"""``posbatch backoffice add-user|serve``: passwords never on the command line, one-line
errors (exit 2), and the console served for real by the command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result
from web_world import World

from posbatch.backoffice import Scope
from posbatch.backoffice._staff import UNKNOWN_MERCHANT
from posbatch.errors import ConfigError
from posbatch.host.cli import open_store
from posbatch.storage import DATABASE_URL_ENV
from posbatch.web.cli import app, check_tls_pair
from testbed import MASTER_KEY, MERCHANT_ID, TERMINAL_ID, cli_database

runner = CliRunner()
SERVE_TIMEOUT_S = 30


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A data dir; on the PostgreSQL run the store is the fresh schema of db_url."""
    cli_database(db_url, monkeypatch)
    return str(tmp_path / "data")


def test_add_user_reads_the_password_from_standard_input(data_dir: str) -> None:
    result = runner.invoke(
        app, ["add-user", "olga", "--role", "ops", "--data-dir", data_dir],
        input="correct horse battery\n",
    )  # fmt: skip
    assert (0, "user olga (ops) added\n") == (result.exit_code, result.output)
    again = runner.invoke(
        app, ["add-user", "olga", "--role", "ops", "--data-dir", data_dir], input="x" * 12 + "\n"
    )
    assert 2 == again.exit_code and "exists already" in again.output


def test_set_password_resets_a_forgotten_password_and_the_lock(data_dir: str) -> None:
    from posbatch.backoffice import BackOffice  # noqa: PLC0415
    from posbatch.host.cli import open_store  # noqa: PLC0415

    runner.invoke(app, ["add-user", "olga", "--role", "ops", "--data-dir", data_dir],
                  input="correct horse battery\n")  # fmt: skip
    result = runner.invoke(
        app, ["set-password", "olga", "--data-dir", data_dir], input="a new passphrase\n"
    )
    assert (0, "user olga: new password set\n") == (result.exit_code, result.output)
    with open_store(Path(data_dir)) as store:
        _, session = BackOffice(store).staff.login(
            "olga", "a new passphrase", address="local", now=datetime.now(UTC)
        )
    assert "olga" == session.user.name
    missing = runner.invoke(
        app, ["set-password", "nobody", "--data-dir", data_dir], input="a new passphrase\n"
    )
    assert (2, "error: no user nobody\n") == (missing.exit_code, missing.output)


def test_unlock_address_lists_and_frees_an_office_behind_one_address(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ops behind the locked address cannot log in to unlock it: the command line can."""
    from datetime import timedelta  # noqa: PLC0415

    from posbatch.backoffice import BackOffice  # noqa: PLC0415
    from posbatch.backoffice._throttle import RULES, Key, Rule  # noqa: PLC0415
    from posbatch.errors import LoginRefused  # noqa: PLC0415

    address_failures_max = 3  # each failure costs a real argon2 hash here
    monkeypatch.setitem(
        RULES, Key.ADDRESS, Rule(address_failures_max, timedelta(minutes=15), timedelta(minutes=15))
    )

    runner.invoke(app, ["add-user", "olga", "--role", "ops", "--data-dir", data_dir],
                  input="correct horse battery\n")  # fmt: skip
    nothing = runner.invoke(app, ["unlock-address", "--data-dir", data_dir])
    assert (0, "no client address is locked\n") == (nothing.exit_code, nothing.output)
    with open_store(Path(data_dir)) as store:
        staff = BackOffice(store).staff
        for number in range(address_failures_max + 1):
            with pytest.raises(LoginRefused):
                staff.login(f"n{number}", "typo", address="203.0.113.7", now=datetime.now(UTC))
    listed = runner.invoke(app, ["unlock-address", "--data-dir", data_dir])
    assert 0 == listed.exit_code
    assert listed.output.startswith("203.0.113.7: address locked until 20")
    assert listed.output.endswith(" UTC; 0 name(s) locked\n")
    freed = runner.invoke(app, ["unlock-address", "203.0.113.7", "--data-dir", data_dir])
    assert (0, "address 203.0.113.7: logins from it may start again\n") == (
        freed.exit_code,
        freed.output,
    )
    with open_store(Path(data_dir)) as store:
        BackOffice(store).staff.login(
            "olga", "correct horse battery", address="203.0.113.7", now=datetime.now(UTC)
        )
    again = runner.invoke(app, ["unlock-address", "203.0.113.7", "--data-dir", data_dir])
    assert (2, "error: no failed login is counted from address 203.0.113.7\n") == (
        again.exit_code,
        again.output,
    )


def test_a_merchant_user_names_its_merchant(data_dir: str) -> None:
    """A merchant user names a merchant this host has a terminal of: one it has not (a typo,
    or a merchant not set up yet) is refused — the user would have seen empty pages."""

    def add(name: str) -> Result:
        return runner.invoke(
            app,
            ["add-user", name, "--role", "merchant", "--merchant-id", MERCHANT_ID,
             "--data-dir", data_dir],
            input="correct horse battery\n",
        )  # fmt: skip

    refused = add("max")
    assert (2, f"error: {UNKNOWN_MERCHANT}\n") == (refused.exit_code, refused.output)
    with open_store(Path(data_dir)) as store:
        store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=datetime.now(UTC))
    result = add("mia")
    assert 0 == result.exit_code
    assert "mia (merchant of 898110054110001) added" in result.output


@pytest.mark.parametrize(
    ("arguments", "password", "message"),
    [
        (["--role", "root"], "correct horse battery", "the role must be ops, support or merchant"),
        (
            ["--role", "merchant"],
            "correct horse battery",
            "a merchant user needs a merchant id (15 letters or digits)",
        ),
        (["--role", "ops"], "short", "the password must be 10..128 characters"),
        (["--role", "ops"], "", "the password must be 10..128 characters"),
    ],
)
def test_bad_add_user_is_one_line_exit_2(
    data_dir: str, arguments: list[str], password: str, message: str
) -> None:
    result = runner.invoke(
        app, ["add-user", "bob", *arguments, "--data-dir", data_dir], input=password + "\n"
    )
    assert (2, f"error: {message}\n") == (result.exit_code, result.output)


def test_a_refused_first_user_leaves_no_store_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add-user may make the store, but a user it refuses makes nothing (a typo in
    --data-dir must not leave a new store, with keys of its own, behind)."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    data_dir = tmp_path / "typo"
    result = runner.invoke(
        app, ["add-user", "bob", "--role", "ops", "--data-dir", str(data_dir)], input="short\n"
    )
    assert (result.exit_code, data_dir.exists()) == (2, False)


def test_there_is_no_password_option() -> None:
    """A password on the command line would show in `ps`: the command has no such option."""
    result = runner.invoke(app, ["add-user", "bob", "--role", "ops", "--password", "x" * 12])
    assert 2 == result.exit_code and "No such option" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--listen", "nowhere"], "--listen must be HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "--listen must be HOST:PORT"),
        (["--cutoff", "25:00"], "the cut-off must be HH:MM"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_bad_serve_options(data_dir: str, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", *arguments, "--data-dir", data_dir])
    assert 2 == result.exit_code and message in result.output and "Traceback" not in result.output


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, both PEM."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_tls_file_that_is_missing_or_not_pem_is_named_before_anything_listens(
    data_dir: str, tmp_path: Path
) -> None:
    """`serve --tls-cert missing.pem --tls-key missing.key` printed the https URL as if
    listening, then `error: No such file or directory`, naming neither file."""
    cert, key = _self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate 6222021234567890128\n")
    missing = str(tmp_path / "missing.pem")
    cases = [
        ([missing, str(key)], f"--tls-cert {missing}: no such file"),
        ([str(cert), missing], f"--tls-key {missing}: no such file"),
        ([str(garbage), str(key)], "are not a PEM certificate and its private key"),
        ([str(key), str(cert)], "are not a PEM certificate and its private key"),
    ]
    for (cert_arg, key_arg), message in cases:
        argv = ["serve", "--tls-cert", cert_arg, "--tls-key", key_arg, "--data-dir", data_dir]
        result = runner.invoke(app, argv)
        lines = result.output.strip().splitlines()
        assert (2, 1) == (result.exit_code, len(lines)), result.output
        assert lines[0].startswith("error: ") and message in lines[0], lines[0]
        assert "6222021234567890128" not in result.output
    check_tls_pair(cert, key)  # a good pair passes (uvicorn loads it the same way)


@pytest.mark.slow
def test_serve_runs_the_console_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The real command: it prints its URL (port 0 resolved), answers, stops on SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop(DATABASE_URL_ENV, None)
    open_store(tmp_path / "data", create=True).close()  # the host's store: serve never makes one
    command = [sys.executable, "-m", "posbatch", "backoffice", "serve", "--listen",
               "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            url = json.loads(line)["url"]
            with urllib.request.urlopen(url + "login", timeout=SERVE_TIMEOUT_S) as answer:
                assert 200 == answer.status and "posbatch" in answer.read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(SERVE_TIMEOUT_S)
    assert 0 == proc.returncode


@pytest.mark.slow
def test_demo_serve_keeps_the_day_and_opens_the_console_with_a_fresh_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`posbatch demo --serve`: the day's store is kept, a `demo` user (ops) gets a password
    made for the run, printed once, which logs in; then the console is served on loopback."""
    import re  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from posbatch import demo  # noqa: PLC0415
    from posbatch.backoffice import BackOffice  # noqa: PLC0415
    from posbatch.host.cli import open_store  # noqa: PLC0415
    from posbatch.web import cli as web_cli  # noqa: PLC0415

    served: list[tuple[str, int, Path]] = []

    def fake_serve(office: BackOffice, host: str, port: int, **options: object) -> None:
        served.append((host, port, Path(str(office.store.engine.url.database)).parent))
        sock = options["sock"]
        assert isinstance(sock, socket.socket)
        sock.close()
        listening = options["on_listening"]
        assert callable(listening)
        listening(port)

    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setattr(web_cli, "serve_console", fake_serve)
    console = Console(record=True, width=120)
    assert 0 == demo.serve_demo("127.0.0.1", 0, console)
    text = console.export_text()
    password = re.search(r"name demo\s+password (\S+)", text)
    assert password is not None and served and served[0][:2] == ("127.0.0.1", 0)
    with open_store(served[0][2]) as store:
        office = BackOffice(store)
        _, session = office.staff.login("demo", password[1], address="local", now=datetime.now(UTC))
        assert "ops" == session.user.role.value
        assert office.queries.terminals(Scope())[0]  # the demo's four terminals
    shutil.rmtree(served[0][2])


def test_demo_serve_on_a_port_in_use_says_so_before_trading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The port is taken first: a busy one is one line naming --port, and no day is traded
    (it traded the whole day, then failed, and left its directory behind)."""
    from posbatch import demo  # noqa: PLC0415

    traded: list[object] = []
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: traded.append(a) or 0)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="--port"):
            demo.serve_demo("127.0.0.1", busy.getsockname()[1])
    assert [] == traded


def test_uvicorns_own_log_lines_go_through_the_card_number_net(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn sets up its loggers with handlers of their own when the console starts: an
    error it logs (an exception's message in a traceback) printed a card number whole."""
    import io  # noqa: PLC0415
    import logging  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from posbatch.web import cli as web_cli  # noqa: PLC0415

    async def serve_nothing(self: uvicorn.Server, sockets: object = None) -> None:
        del self, sockets

    monkeypatch.setattr(uvicorn.Server, "serve", serve_nothing)
    with socket.create_server(("127.0.0.1", 0)) as sock:
        web_cli.serve_console(world.office, "127.0.0.1", 0, sock=sock)
    handlers = logging.getLogger("uvicorn").handlers
    streams = [io.StringIO() for _ in handlers]
    for handler, stream in zip(handlers, streams, strict=True):
        assert isinstance(handler, logging.StreamHandler)
        monkeypatch.setattr(handler, "stream", stream)
    logging.getLogger("uvicorn.error").error("bad request: card %s", "6222021234567890128")
    written = "".join(stream.getvalue() for stream in streams)
    assert (True, False) == ("622202*********0128" in written, "6222021234567890128" in written)
