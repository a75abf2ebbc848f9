"""Doctor: diagnosis and repair of settlement failures (批次号错误 and the rest).

Pure core: :class:`Evidence` in, :func:`diagnose` → :class:`Diagnosis` out
(the rule table in ``_rules.py``); the report and the support bundle are pure
renderings of both. Gatherers read a terminal journal, the host over the
network, or the host store; repairs act through the terminal engine.
"""

from posbatch.doctor._accounting import Accounting, account
from posbatch.doctor._checks import Check, Line, Status, run_checks
from posbatch.doctor._evidence import (
    BackupInfo,
    BatchAdvance,
    Evidence,
    HostBatch,
    HostEntry,
    HostException,
    HostRecords,
    HostSources,
    HostView,
    JournalAnswer,
    JournalEvidence,
    LocalBatchState,
    ManualEdit,
    NetworkProbe,
    RecoveryEvent,
    SoftwareUpdate,
)
from posbatch.doctor._gather import (
    gather_terminal,
    host_evidence,
    host_records,
    journal_evidence,
    tcp_probe,
)
from posbatch.doctor._net import TcpExchange
from posbatch.doctor._repair import TerminalSite, run_repairs
from posbatch.doctor._report import (
    RepairResult,
    RepairStatus,
    Report,
    bundle_text,
    masked,
    read_bundle,
    render,
    render_text,
    scrub,
    write_bundle,
)
from posbatch.doctor._rules import (
    RULES,
    Category,
    Cause,
    Diagnosis,
    Finding,
    Outcome,
    Repair,
    Rule,
    Strength,
    Verdict,
    diagnose,
    rule_for,
)
from posbatch.doctor._run import always_yes, diagnose_from_host, examine

__all__ = [
    "RULES",
    "Accounting",
    "BackupInfo",
    "BatchAdvance",
    "Category",
    "Cause",
    "Check",
    "Diagnosis",
    "Evidence",
    "Finding",
    "HostBatch",
    "HostEntry",
    "HostException",
    "HostRecords",
    "HostSources",
    "HostView",
    "JournalAnswer",
    "JournalEvidence",
    "Line",
    "LocalBatchState",
    "ManualEdit",
    "NetworkProbe",
    "Outcome",
    "RecoveryEvent",
    "Repair",
    "RepairResult",
    "RepairStatus",
    "Report",
    "Rule",
    "SoftwareUpdate",
    "Status",
    "Strength",
    "TcpExchange",
    "TerminalSite",
    "Verdict",
    "account",
    "always_yes",
    "bundle_text",
    "diagnose",
    "diagnose_from_host",
    "examine",
    "gather_terminal",
    "host_evidence",
    "host_records",
    "journal_evidence",
    "masked",
    "read_bundle",
    "render",
    "render_text",
    "rule_for",
    "run_checks",
    "run_repairs",
    "scrub",
    "tcp_probe",
    "write_bundle",
]
