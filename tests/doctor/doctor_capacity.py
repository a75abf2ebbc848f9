"""A batch over field 48's capacity, from before the capacity rules (issue 11 §1), built on
both sides behind the rules' back: what an older version of host and terminal let happen."""

from __future__ import annotations

from dataclasses import replace

from doctor_world import PAN, World

from posbatch.batch.model import CardType, Kind
from posbatch.terminal import KEY_FILE_NAME, TerminalSecrets, TxnRow, TxnState
from posbatch.wire import mask_pan
from testbed import TERMINAL_ID

OLD_SALES = 1_001


def over_capacity(world: World) -> None:
    """The open batch holds 1,001 approved domestic sales on the terminal and on the host
    (the 1,000th was approved by an older host): field 48 cannot count it."""
    world.established(open_sales=0)
    terminal = world.terminal
    journal = terminal.journal
    batch = journal.current_batch()
    secrets = TerminalSecrets.load(world.data_dir / KEY_FILE_NAME)
    state = journal.state()
    first_stan = state.stan + 1  # STANs taken one by one, as the old terminal did
    at = terminal.journal.transactions()[-1].created_at
    host_batch = next(b for b in world.store.batches(TERMINAL_ID) if b.current)
    with journal.write(world.terminal_clock()) as writer:
        for index in range(OLD_SALES):
            writer.state(replace(state, stan=first_stan + index))
            writer.insert_txn(
                TxnRow(
                    txn_id=journal.next_txn_id() + index, batch_id=batch.batch_id,
                    batch_no=batch.batch_no, kind=Kind.SALE.value, stan=first_stan + index,
                    amount_fen=1_000 + index, pan_sealed=secrets.seal_pan(PAN, state.terminal_id),
                    pan_masked=mask_pan(PAN), expiry=None, card_type=CardType.DOMESTIC.value,
                    state=TxnState.APPROVED, created_at=at, updated_at=at, response_code="00",
                )
            )  # fmt: skip
    with world.store.transaction() as tx:
        for index in range(OLD_SALES):
            tx.insert_transaction(
                batch_id=host_batch.batch_id, terminal_id=TERMINAL_ID, stan=first_stan + index,
                kind="sale", amount_fen=1_000 + index, card_type="00",
                pan_hmac=world.store.pan_hmac(PAN), pan_masked=mask_pan(PAN), status="approved",
                response_code="00", rrn=None, auth_code=None, local_time=None, local_date=None,
                original_transaction_id=None, request_digest="old", created_at=world.clock(),
            )  # fmt: skip
            tx.note_approval(host_batch.batch_id, 1_000 + index)
            tx.note_stan(TERMINAL_ID, first_stan + index)
