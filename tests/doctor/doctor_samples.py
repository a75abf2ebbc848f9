"""Hand-made evidence for the pure rule engine (the real broken states are in test_causes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from posbatch.doctor import (
    Evidence,
    HostView,
    JournalEvidence,
    LocalBatchState,
    NetworkProbe,
)
from testbed import MERCHANT_ID, TERMINAL_ID

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def journal(**changes: object) -> JournalEvidence:
    base = JournalEvidence(
        terminal_id=TERMINAL_ID,
        merchant_id=MERCHANT_ID,
        now=NOW,
        batch_no=7,
        batch_state=LocalBatchState.OPEN,
        last_stan=120,
        approved_count=3,
        approved_net_fen=4500,
        pending_reversals=0,
        unanswered_requests=0,
        duplicate_answers=0,
        settlement_request_unanswered=False,
        upload_records_total=0,
        upload_records_acknowledged=0,
        stan_gaps=0,
        settled_batches=6,
        oldest_unsettled_at=NOW - timedelta(hours=5),
        last_settled_at=NOW - timedelta(hours=29),
        journal_started_at=NOW - timedelta(days=30),
        fresh_start=True,
        chain_intact=True,
        first_bad_row=None,
        schema_version="0001",
        schema_version_expected="0001",
        software_version="1.0.0",
        free_disk_bytes=10 * 1024 * 1024 * 1024,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def host_view(**changes: object) -> HostView:
    base = HostView(
        reached=True,
        response_code="00",
        batch_no=7,
        batch_state="OPEN",
        last_closed_batch_no=6,
        host_time=NOW,
        terminal_time=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def network(**changes: object) -> NetworkProbe:
    base = NetworkProbe(
        address="127.0.0.1:5000",
        tcp_reachable=True,
        connect_ms=2,
        echo_round_trips_ms=(3, 4, 3, 5, 3),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def evidence(**changes: object) -> Evidence:
    base = Evidence(
        terminal_id=TERMINAL_ID,
        gathered_at=NOW,
        journal=journal(),
        host_view=host_view(),
        network=network(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]
