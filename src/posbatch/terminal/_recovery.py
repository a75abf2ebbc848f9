"""Sign-on and recovery: keys, the host's batch number, and what to do when they differ.

Theory of operation
-------------------
:meth:`Recovery.sign_on_flow` (0800) gets new working keys and learns the
host's batch number (60.2) and its batch state (63). Unless told not to
(``reconcile=False``: a sign-on only for keys, in the middle of a flow), it
then reconciles the journal's current batch with the host's through
:func:`posbatch.batch.terminal_batch.decide_recovery`:

- ``RESUME``: the same number, nothing to do;
- ``ADOPT``: the local batch holds nothing to settle — it takes the host's number;
- ``SET_ASIDE``: the local batch is ahead of the host's with approvals — closed
  unreconciled for the back office, the host's number adopted, nothing deleted;
- ``SETTLE_CLOSED``: the local batch is behind, or the host closed it — the
  0500 is sent (the host answers a batch it closed with its stored result), the
  batch closes locally, and an empty next batch takes the host's number.

A new or restored journal (``resync_pending``) settles the host's open batch
before it trades (:meth:`Recovery._resync`): it cannot know what that batch
holds, and reusing its STANs would be answered 94.

:meth:`Recovery.recover` is the answer to a 77: drop the keys, sign on, and
reconcile with the 77's field 63 when its MAC verified (else with the
sign-on's), then clear the outstanding queue. Recovery may settle, and a
settlement may meet a 77: ``RECOVERY_DEPTH_MAX`` bounds the nesting.

The manual batch number (:meth:`Recovery.set_batch_no_flow`) is typed twice
and taken only when the host's sign-on says the same number. Sign-off, echo
and doctor's probe, the other 08xx exchanges, live here too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from posbatch.batch.codes import APPROVED, describe
from posbatch.batch.counters import STAN_MAX, next_stan, parse_batch_no
from posbatch.batch.model import BatchStateDetail
from posbatch.batch.terminal_batch import (
    RecoveryAction,
    RecoveryDecision,
    SettleEvent,
    SettleStep,
    decide_recovery,
)
from posbatch.batch.terminal_batch import apply as settle_apply
from posbatch.errors import (
    ConfigError,
    Declined,
    HostUnreachable,
    KeyCheckError,
    TerminalError,
)
from posbatch.terminal._answers import STALE_FRAMES_MAX
from posbatch.terminal._flows import Flow, Reply, Send, Timeout
from posbatch.terminal._journal import BatchRow
from posbatch.terminal._results import SignOnResult
from posbatch.wire import (
    AdminResponse,
    EchoRequest,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    decode_batch_detail,
    encode_batch_detail,
    unwrap_working_keys,
)

if TYPE_CHECKING:
    from posbatch.terminal._context import EngineContext

__all__ = ["RECOVERY_DEPTH_MAX", "Recovery"]

RECOVERY_DEPTH_MAX: Final = 2  # nested recoveries (recovery → settle → 77 → …)


class Recovery:
    """Sign-on, sign-off, echo; reconciliation of the batch number with the host's."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def sign_on_flow(self, *, reconcile: bool = True) -> Flow[SignOnResult]:
        """0800: new working keys; adopt or reconcile the host's batch number (60.2, 63)."""
        state = self.ctx.journal.state()
        batch = self.ctx.journal.current_batch()
        stan = self.ctx.new_stan()
        request = SignOnRequest(state.terminal_id, state.merchant_id, stan, batch.batch_no)
        answer = yield from self.ctx.answers.exchange(request, SignOnResponse, mac=False)
        if answer is None:
            raise HostUnreachable("sign-on not answered")
        response = answer.message
        assert isinstance(response, SignOnResponse)
        if response.response_code != APPROVED:
            raise Declined(
                f"sign-on refused: {describe(response.response_code)}",
                response_code=response.response_code,
            )
        if response.working_keys is None:
            raise Declined("sign-on answer carries no working keys", response_code="96")
        try:
            self.ctx.keys = unwrap_working_keys(self.ctx.secrets.master_key, response.working_keys)
        except KeyCheckError as exc:
            raise TerminalError(f"sign-on keys do not check: wrong master key? ({exc})") from exc
        detail = response.batch_state
        self.ctx.last_host_detail = detail
        if not reconcile:
            decision = decide_recovery(self.ctx.view(batch), response.batch_no, detail)
            return SignOnResult(batch.batch_no, response.batch_no, decision)
        decision = yield from self._reconcile(response.batch_no, detail, cause="sign-on")
        if self.ctx.journal.state().resync_pending:
            yield from self._resync(response.batch_no, detail)
        return SignOnResult(self.ctx.journal.current_batch().batch_no, response.batch_no, decision)

    def _resync(self, host_batch_no: int, detail: BatchStateDetail | None) -> Flow[None]:
        """A new or restored journal: settle the host's open batch before trading.

        The journal cannot know what that batch already holds (approvals made
        before a reinstall or after the backup); reusing its STANs would be
        answered 94. Settling it hands the host our records and lets it put
        what only it has into exceptions; nothing is lost on either side. A
        host that has never seen this terminal (batch 000001, none closed) has
        nothing to resync.
        """
        fresh_host = host_batch_no == 1 and (detail is None or detail.last_closed_batch_no is None)
        known_history = bool(
            self.ctx.journal.events("restored") or self.ctx.journal.events("reinstalled")
        )
        if known_history or not fresh_host:
            batch = self.ctx.journal.current_batch()
            with self.ctx.journal.write(self.ctx.now()) as writer:
                writer.event(
                    "resync",
                    f"new or restored journal: settling the host's batch {host_batch_no:06d} "
                    "before any new transaction",
                    host_batch_no=host_batch_no,
                    local_batch_no=batch.batch_no,
                )
            yield from self.ctx.outstanding.flush()
            yield from self.ctx.settlement.settle_batch(recovery=True)
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.state(replace(self.ctx.journal.state(), resync_pending=False))

    def _reconcile(
        self, host_batch_no: int, detail: BatchStateDetail | None, *, cause: str
    ) -> Flow[RecoveryDecision]:
        batch = self.ctx.journal.current_batch()
        decision = decide_recovery(self.ctx.view(batch), host_batch_no, detail)
        if decision.action == RecoveryAction.RESUME:
            return decision
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.event(
                "recovery",
                decision.reason,
                cause=cause,
                action=decision.action.value,
                local_batch_no=batch.batch_no,
                host_batch_no=host_batch_no,
                detail=encode_batch_detail(detail) if detail is not None else None,
            )
        if decision.action == RecoveryAction.ADOPT:
            self.renumber(batch, host_batch_no, "adopted at " + cause)
        elif decision.action == RecoveryAction.SET_ASIDE:
            self.ctx.settlement.close(
                batch, SettleEvent.HOST_CLOSED, "set_aside", host_batch_no=host_batch_no
            )
        elif self.ctx.recovery_depth < RECOVERY_DEPTH_MAX:
            self.ctx.recovery_depth += 1
            try:
                yield from self.ctx.settlement.settle_batch(recovery=True)
            finally:
                self.ctx.recovery_depth -= 1
            current = self.ctx.journal.current_batch()
            if current.batch_no != host_batch_no and not self.ctx.view(current).counted_count:
                self.renumber(current, host_batch_no, "adopted after settling the old batch")
        else:
            raise TerminalError("recovery did not converge: run `posbatch doctor`")
        return decision

    def renumber(self, batch: BatchRow, batch_no: int, why: str) -> None:
        settle_apply(batch.settle_step, SettleEvent.RENUMBER)
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.batch(replace(batch, batch_no=batch_no))
            writer.event(
                "batch_renumbered",
                f"batch {batch.batch_no:06d} → {batch_no:06d} ({why})",
                old_batch_no=batch.batch_no,
                new_batch_no=batch_no,
            )

    def set_batch_no_flow(self, first: str, second: str) -> Flow[SignOnResult]:
        """Manual batch number: typed twice, accepted only if the host agrees."""
        typed = parse_batch_no(first)
        if parse_batch_no(second) != typed:
            raise ConfigError("the two entries differ: type the batch number again")
        batch = self.ctx.journal.current_batch()
        view = self.ctx.view(batch)
        if batch.settle_step != SettleStep.OPEN or view.counted_count or view.pending_count:
            raise ConfigError(
                f"batch {batch.batch_no:06d} holds transactions: settle it before renumbering"
            )
        result = yield from self.sign_on_flow(reconcile=False)
        if result.host_batch_no != typed:
            with self.ctx.journal.write(self.ctx.now()) as writer:
                writer.event(
                    "manual_batch_no_refused",
                    f"typed {typed:06d}, host has {result.host_batch_no:06d}",
                    typed=typed,
                    host_batch_no=result.host_batch_no,
                )
            raise ConfigError(
                f"the host's batch number is {result.host_batch_no:06d}, not {typed:06d}: "
                "nothing changed (typing it would have caused a 77)"
            )
        if typed != batch.batch_no:
            self.renumber(batch, typed, "typed by hand, confirmed by the host")
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.event(
                "manual_batch_no", f"batch number {typed:06d} entered and confirmed", typed=typed
            )
        return SignOnResult(typed, result.host_batch_no, result.recovery)

    def sign_off_flow(self) -> Flow[str]:
        state = self.ctx.journal.state()
        stan = self.ctx.new_stan()
        request = SignOffRequest(
            state.terminal_id, state.merchant_id, stan, self.ctx.journal.current_batch().batch_no
        )
        answer = yield from self.ctx.answers.exchange(request, AdminResponse, mac=False)
        self.ctx.keys = None
        if answer is None:
            raise HostUnreachable("sign-off not answered")
        assert isinstance(answer.message, AdminResponse)
        return answer.message.response_code

    def echo_flow(self) -> Flow[str]:
        state = self.ctx.journal.state()
        stan = self.ctx.new_stan()
        request = EchoRequest(
            state.terminal_id, state.merchant_id, stan, self.ctx.journal.current_batch().batch_no
        )
        answer = yield from self.ctx.answers.exchange(request, AdminResponse, mac=False)
        if answer is None:
            raise HostUnreachable("echo not answered")
        assert isinstance(answer.message, AdminResponse)
        return answer.message.response_code

    def probe_flow(self, offset: int, timeout_ms: int) -> Flow[AdminResponse | None]:
        """An echo test that changes nothing, for doctor: the answer, or None (no answer).

        Its STAN is borrowed, not taken: the ``offset``-th after the journal's last
        (1 = the next one), and nothing is written. An echo changes nothing on the host
        either (docs/host.md), so the next real request may use the same STAN.
        """
        state = self.ctx.journal.state()
        stan = state.stan or STAN_MAX
        for _ in range(offset):
            stan = next_stan(stan)
        request = EchoRequest(
            state.terminal_id, state.merchant_id, stan, self.ctx.journal.current_batch().batch_no
        )
        frame = self.ctx.answers.frame(request, mac=False)
        reply: Reply = yield Send(frame, timeout_ms)
        for _ in range(STALE_FRAMES_MAX):
            if isinstance(reply, Timeout):
                return None
            answer = self.ctx.answers.match(reply, request, AdminResponse, None)
            if answer is not None:
                assert isinstance(answer.message, AdminResponse)
                return answer.message
            reply = yield Send(b"", timeout_ms)
        return None

    def recover(self, detail_text: str | None, *, cause: str) -> Flow[None]:
        """On 77: sign on (new keys, the host's batch) and reconcile the journal with it.

        ``detail_text`` is the 77's field 63 when its MAC verified (None: the
        sign-on's field 63 is used).
        """
        detail = decode_batch_detail(detail_text) if detail_text else None
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.event(
                "batch_error",
                f"77 {cause}; host says {detail_text or 'nothing in 63'}",
                detail=detail_text,
            )
        self.ctx.keys = None
        result = yield from self.sign_on_flow(reconcile=False)
        host_detail = detail if detail is not None else self.ctx.last_host_detail
        yield from self._reconcile(result.host_batch_no, host_detail, cause=cause)
        if self.ctx.journal.state().resync_pending:
            yield from self._resync(result.host_batch_no, host_detail)
        yield from self.ctx.outstanding.flush()
