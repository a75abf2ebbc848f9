"""The acquirer host (POSP): sign-on, authorisation, settlement and batch upload.

Public API::

    store = HostStore.open("sqlite:///posbatch-data/host.db", pan_key=key)
    store.add_terminal("898110054110001", "10000001", master_key, now=now)
    core = HostCore(store, clock=clock, random_bytes=rng)
    session = HostSession(core)            # one per connection
    replies = session.receive_data(chunk)  # list[HostReply]

The asyncio TCP shell is :mod:`posbatch.host.server`.
"""

from posbatch.host._clearing import ClearingStore
from posbatch.host.core import GROUP_REQUESTS_MAX, HostCore, HostReply, RequestLog
from posbatch.host.faults import FaultAction, FaultRule, FaultScript, load_fault_script
from posbatch.host.issuer import Issuer, IssuerRules
from posbatch.host.session import HostSession
from posbatch.host.store import (
    BatchInfo,
    ExceptionInfo,
    ExceptionKind,
    HostStore,
    SettlementInfo,
    TerminalInfo,
    TransactionInfo,
    TransactionStatus,
)

__all__ = [
    "GROUP_REQUESTS_MAX",
    "BatchInfo",
    "ClearingStore",
    "ExceptionInfo",
    "ExceptionKind",
    "FaultAction",
    "FaultRule",
    "FaultScript",
    "HostCore",
    "HostReply",
    "HostSession",
    "HostStore",
    "Issuer",
    "IssuerRules",
    "RequestLog",
    "SettlementInfo",
    "TerminalInfo",
    "TransactionInfo",
    "TransactionStatus",
    "load_fault_script",
]
