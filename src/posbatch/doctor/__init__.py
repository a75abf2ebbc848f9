"""Doctor: diagnosis and repair of settlement failures (批次号错误 and the rest).

Pure core: :class:`Evidence` in, :func:`diagnose` → :class:`Diagnosis` out
(the rule table in ``_rules.py``); the report and the support bundle are pure
renderings of both. Gatherers read a terminal journal, the host over the
network, or the host store; repairs act through the terminal engine.
"""

from posbatch.doctor._checks import Check, Line, Status, run_checks
from posbatch.doctor._evidence import (
    BackupInfo,
    BatchAdvance,
    Evidence,
    HostBatch,
    HostException,
    HostRecords,
    HostView,
    JournalEvidence,
    LocalBatchState,
    ManualEdit,
    NetworkProbe,
    RecoveryEvent,
    SoftwareUpdate,
)
from posbatch.doctor._report import (
    RepairResult,
    RepairStatus,
    Report,
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

__all__ = [
    "RULES",
    "BackupInfo",
    "BatchAdvance",
    "Category",
    "Cause",
    "Check",
    "Diagnosis",
    "Evidence",
    "Finding",
    "HostBatch",
    "HostException",
    "HostRecords",
    "HostView",
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
    "Verdict",
    "diagnose",
    "read_bundle",
    "render",
    "render_text",
    "rule_for",
    "run_checks",
    "scrub",
    "write_bundle",
]
