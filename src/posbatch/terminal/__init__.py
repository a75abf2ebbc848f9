"""The terminal engine: crash-safe journal, reversals, resumable settlement, 77 recovery.

Typical use (synchronous link to a host core in the same process)::

    from posbatch.terminal import InProcessLink, Journal, Terminal, TerminalSecrets

    journal = Journal.open("sqlite:///data/journal.db")
    Terminal.initialize(journal, merchant_id=..., terminal_id=..., host_address=..., clock=clock)
    terminal = Terminal(journal, TerminalSecrets.create(master_key), clock=clock,
                        exchange=InProcessLink(core))
    result = terminal.sale(1250, "6222021234567890123")   # TransactionResult
    report = terminal.settle()                             # SettlementResult

Over TCP, the same flows run through :class:`TcpDriver`::

    driver = TcpDriver("127.0.0.1", 5000)
    result = await driver.run(terminal.sale_flow(1250, pan))
"""

from posbatch.batch.money import format_fen, parse_yuan
from posbatch.terminal._drivers import InProcessLink, TcpDriver, parse_address
from posbatch.terminal._engine import (
    BATCH_LIMIT_DEFAULT,
    BATCH_LIMIT_MAX,
    RESPONSE_TIMEOUT_MS,
    BalanceResult,
    SettlementResult,
    SignOnResult,
    Terminal,
    TransactionResult,
)
from posbatch.terminal._files import (
    DEFAULT_DATA_DIR,
    BackupReport,
    RestoreReport,
    backup_terminal,
    check_restore,
    init_terminal,
    journal_url,
    mark_restored,
    open_terminal,
    read_backup_key,
    restore_journal,
    secrets_for_backup,
    write_backup_key,
)
from posbatch.terminal._flows import TIMEOUT, Exchange, Flow, Send, Timeout, run_flow
from posbatch.terminal._journal import (
    JOURNAL_FILE_NAME,
    MIGRATIONS,
    VERSION_TABLE,
    BatchRow,
    Checkpoint,
    EventRow,
    Journal,
    StateRow,
    TxnRow,
    TxnState,
    Writer,
    schema_head,
)
from posbatch.terminal._receipts import render_receipt, render_settlement_report
from posbatch.terminal._secrets import KEY_FILE_NAME, SCRYPT_N_MIN, BackupKey, TerminalSecrets

__all__ = [
    "BATCH_LIMIT_DEFAULT",
    "BATCH_LIMIT_MAX",
    "DEFAULT_DATA_DIR",
    "JOURNAL_FILE_NAME",
    "KEY_FILE_NAME",
    "MIGRATIONS",
    "RESPONSE_TIMEOUT_MS",
    "SCRYPT_N_MIN",
    "TIMEOUT",
    "VERSION_TABLE",
    "BackupKey",
    "BackupReport",
    "BalanceResult",
    "BatchRow",
    "Checkpoint",
    "EventRow",
    "Exchange",
    "Flow",
    "InProcessLink",
    "Journal",
    "RestoreReport",
    "Send",
    "SettlementResult",
    "SignOnResult",
    "StateRow",
    "TcpDriver",
    "Terminal",
    "TerminalSecrets",
    "Timeout",
    "TransactionResult",
    "TxnRow",
    "TxnState",
    "Writer",
    "backup_terminal",
    "check_restore",
    "format_fen",
    "init_terminal",
    "journal_url",
    "mark_restored",
    "open_terminal",
    "parse_address",
    "parse_yuan",
    "read_backup_key",
    "render_receipt",
    "render_settlement_report",
    "restore_journal",
    "run_flow",
    "schema_head",
    "secrets_for_backup",
    "write_backup_key",
]
