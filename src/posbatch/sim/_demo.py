"""The main job a new user sees (``posbatch demo`` / ``make demo``): a trading day, for real.

Theory of operation
-------------------
An embedded host — :class:`~posbatch.host.HostStore` on a SQLite file in a
temporary data directory, :class:`~posbatch.host.HostCore`, and the asyncio
:class:`~posbatch.host.server.HostServer` on a loopback port — and four shops'
terminals, each a :class:`~posbatch.terminal.Terminal` over its own journal
file, speaking to it over real TCP sockets through
:class:`~posbatch.terminal.TcpDriver`. One asyncio loop runs both sides.

The day meets the four common causes of 批次号错误 (batch-number errors), one
per shop, each *met* (what the cashier would see), *diagnosed*
(:func:`posbatch.doctor.diagnose` over the journal and the host's records),
and *resolved* (by the engine's own operation — the same one doctor's repair
plan names):

1. input error — the cashier of a new terminal types the batch number by hand,
   with a slip, twice; the engine checks it against the host and refuses it;
2. terminal fault — a software reinstall wipes a terminal's counters (batch
   000001, STAN 000001) after it settled; at sign-on the host's number wins;
3. network — the host closes a batch but its settlement answer is lost; the
   cashier settles again and the host repeats its answer (no double close);
4. mismatch after a host-side change — the back office advances a terminal's
   batch while it holds approvals; its next sale meets a 77, the engine settles
   the batch the host closed, adopts the new number and retries the sale.

Every batch then settles, and the report proves nothing was lost: each
terminal's approvals against the host's, the totals, the exception records
with their causes, and DESIGN.md's invariants 1–6 checked by the simulator's
checker over the very same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from posbatch.batch.codes import describe
from posbatch.batch.model import Kind
from posbatch.doctor import Evidence, diagnose, host_records, journal_evidence, rule_for
from posbatch.errors import ConfigError, PosbatchError, TerminalError
from posbatch.host import FaultAction, FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.cli import kek, pan_key
from posbatch.host.server import HostServer
from posbatch.sim._checker import check
from posbatch.sim._snapshot import take_snapshot
from posbatch.sim._workload import CARDS, Card, draw_amount_fen
from posbatch.terminal import (
    TIMEOUT,
    Flow,
    Journal,
    SettlementResult,
    TcpDriver,
    Terminal,
    TerminalSecrets,
    TransactionResult,
    format_fen,
)
from posbatch.wire import FrameReader, decode_message

__all__ = ["run_main_job"]

LOOPBACK: Final = "127.0.0.1"
# Short enough that a lost answer costs the demo seconds, not minutes.
DEMO_TIMEOUT_MS: Final = 1_500
SALES_PER_SHOP: Final = 4
DEMO_SEED: Final = 20261125
_T = TypeVar("_T")
GOOD_CARDS: Final = tuple(card for card in CARDS if card.weight >= 60)


@dataclass
class _Shop:
    name: str
    terminal_id: str
    merchant_id: str
    master_key: bytes
    directory: Path
    journals: list[Journal] = field(default_factory=list)
    terminal: Terminal | None = None
    driver: TcpDriver | None = None

    @property
    def engine(self) -> Terminal:
        assert self.terminal is not None
        return self.terminal


class _Demo:
    def __init__(self, out: Console, data_dir: Path) -> None:
        self.out = out
        self.data_dir = data_dir
        self.random = random.Random(DEMO_SEED)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # The data directory's own PAN key and KEK (host.cli): `demo --serve` and any
        # `posbatch host … --data-dir` reopen this store with the same keys.
        self.store = HostStore.open(
            f"sqlite:///{data_dir / 'host.db'}", pan_key=pan_key(data_dir), kek=kek(data_dir)
        )
        self.core = HostCore(self.store, clock=self.clock)
        self.server = HostServer(self.core)
        self.address = (LOOPBACK, 0)
        self.shops: list[_Shop] = []
        self.steps_ok: list[bool] = []

    # --- set-up -----------------------------------------------------------------------

    async def start(self) -> None:
        self.address = await self.server.start(LOOPBACK, 0)
        names = ("A 便利店 corner shop", "B 面馆 noodle bar", "C 药房 pharmacy", "D 书店 bookshop")
        for index, name in enumerate(names):
            shop = _Shop(
                name,
                f"{20_000_001 + index:08d}",
                f"89811005420{index:04d}",
                secrets.token_bytes(16),
                self.data_dir / f"terminal-{index + 1}",
            )
            self.store.add_terminal(
                shop.merchant_id, shop.terminal_id, shop.master_key, now=self.clock()
            )
            self._install(shop, journal_name="journal.db")
            self.shops.append(shop)
        self.out.print(
            f"host listening on {self.address[0]}:{self.address[1]} (SQLite in {self.data_dir}); "
            f"{len(self.shops)} terminals connect over TCP"
        )

    def _install(self, shop: _Shop, *, journal_name: str, reinstall: bool = False) -> None:
        journal = Journal.open(f"sqlite:///{shop.directory / journal_name}")
        Terminal.initialize(
            journal,
            merchant_id=shop.merchant_id,
            terminal_id=shop.terminal_id,
            host_address=f"{self.address[0]}:{self.address[1]}",
            clock=self.clock,
            reinstall=reinstall,
        )
        shop.journals.append(journal)
        shop.terminal = Terminal(
            journal,
            TerminalSecrets.create(shop.master_key),
            clock=self.clock,
            timeout_ms=DEMO_TIMEOUT_MS,
        )
        shop.driver = TcpDriver(*self.address)

    async def close(self) -> None:
        for shop in self.shops:
            if shop.driver is not None:
                await shop.driver.close()
        await self.server.close()
        for shop in self.shops:
            for journal in shop.journals:
                journal.engine.dispose()
        self.store.close()

    # --- helpers ----------------------------------------------------------------------

    async def _run(self, shop: _Shop, flow: Flow[_T]) -> _T:
        assert shop.driver is not None
        return await shop.driver.run(flow)

    async def _run_watching(self, shop: _Shop, flow: Flow[_T]) -> _T:
        """Drive ``flow`` frame by frame; at the first 77, stop to show it and ask doctor."""
        assert shop.driver is not None
        seen = False
        try:
            request = next(flow)
            while True:
                answer = await shop.driver.exchange(request.frame, request.timeout_ms)
                if not seen and answer is not None and _is_batch_error(answer):
                    seen = True
                    message = decode_message(FrameReader().feed(answer)[0].body)
                    detail = getattr(message, "detail", None)
                    self.out.print(f"  [yellow]met[/]: {describe('77')}; field 63: {detail}")
                    self.doctor(shop)
                request = flow.send(TIMEOUT if answer is None else answer)
        except StopIteration as stop:
            result: _T = stop.value
            return result

    async def sale(self, shop: _Shop, card: Card | None = None) -> TransactionResult:
        card = card or self.random.choice(GOOD_CARDS)
        amount_fen = min(draw_amount_fen(self.random), 200_000)
        result = await self._run(
            shop, shop.engine.sale_flow(amount_fen, card.pan, expiry=card.expiry)
        )
        return result

    async def trade(self, shop: _Shop, count: int) -> None:
        results = [await self.sale(shop) for _ in range(count)]
        line = ", ".join(
            f"¥{format_fen(r.amount_fen)} {'✔' if r.approved else r.response_code}" for r in results
        )
        self.out.print(f"  {shop.name}: {line}")

    async def settle(self, shop: _Shop) -> SettlementResult:
        result = await self._run(shop, shop.engine.settle_flow())
        return result

    def doctor(self, shop: _Shop) -> None:
        """What ``posbatch doctor`` says about the shop right now (journal + host records)."""
        now = self.clock()
        evidence = Evidence(
            terminal_id=shop.terminal_id,
            gathered_at=now,
            journal=journal_evidence(shop.engine.journal, now=now),
            host_records=host_records(self.store, shop.terminal_id, now=now),
        )
        diagnosis = diagnose(evidence)
        if diagnosis.cause is None:
            titles = "; ".join(rule_for(cause).title_en for cause in diagnosis.candidates)
            more = f" between: {titles}" if titles else ""
            self.out.print(f"  [cyan]doctor[/]: {diagnosis.outcome.value}{more}")
            return
        rule = rule_for(diagnosis.cause)
        self.out.print(
            f"  [cyan]doctor[/]: cause — {rule.title_en} / {rule.title_zh} ({rule.category})"
        )
        finding = diagnosis.finding(diagnosis.cause)
        for line in finding.lines[:3]:
            self.out.print(f"          evidence: {line.en}")
        if diagnosis.repairs:
            repairs = ", ".join(repair.value for repair in diagnosis.repairs)
            self.out.print(f"          repair it can do itself: {repairs}")

    def step(self, ok: bool, text: str) -> None:
        self.steps_ok.append(ok)
        mark = "[green]resolved ✔[/]" if ok else "[red]NOT resolved ✘[/]"
        self.out.print(f"  {mark} {text}")

    # --- the day ----------------------------------------------------------------------

    async def morning(self) -> None:
        self.out.rule("08:00 — every terminal signs on and trades")
        for shop in self.shops[1:]:
            await self._run(shop, shop.engine.sign_on_flow())
            await self.trade(shop, SALES_PER_SHOP)

    async def cause_typo(self, shop: _Shop) -> None:
        self.out.rule("cause 1 — input error: a batch number typed by hand (手工输入批次号)")
        await self._run(shop, shop.engine.sign_on_flow())
        host_batch_no = shop.engine.current_batch().batch_no
        typed = f"{host_batch_no:06d}"[:4] + "10"  # the slip: 000001 → 000010
        self.out.print(
            f"  {shop.name}: the new terminal asks for the batch number; "
            f"the cashier types {typed} twice"
        )
        try:
            await self._run(shop, shop.engine.set_batch_no_flow(typed, typed))
            self.out.print("  [red]the typo was accepted[/]")
            refused = False
        except ConfigError as exc:
            self.out.print(f"  [yellow]met[/]: {exc}")
            refused = True
        self.doctor(shop)
        right = f"{host_batch_no:06d}"
        result = await self._run(shop, shop.engine.set_batch_no_flow(right, right))
        self.step(
            refused and shop.engine.current_batch().batch_no == host_batch_no,
            f"typed again: {right} confirmed by the host ({result.recovery.reason})",
        )
        await self.trade(shop, SALES_PER_SHOP)

    async def cause_terminal_fault(self, shop: _Shop) -> None:
        self.out.rule("cause 2 — terminal fault: a reinstall resets the counters (计数器清零)")
        settled = await self.settle(shop)
        self.out.print(
            f"  {shop.name}: settled batch {settled.batch_no:06d} "
            f"({settled.close_reason}); host now at {settled.next_batch_no:06d}"
        )
        if shop.driver is not None:
            await shop.driver.close()
        self._install(shop, journal_name="journal-after-reinstall.db", reinstall=True)
        local = shop.engine.current_batch().batch_no
        self.out.print(
            f"  the terminal software is reinstalled: a new journal starts at batch "
            f"{local:06d}, STAN 000001 (the old journal is kept)"
        )
        info = self.store.terminal(shop.terminal_id)
        host_batch_no = info.batch_no if info else None
        self.out.print(
            f"  [yellow]met[/]: terminal batch {local:06d} ≠ host batch {host_batch_no:06d}"
            if host_batch_no
            else "  host batch unknown"
        )
        self.doctor(shop)
        signed = await self._run(shop, shop.engine.sign_on_flow())
        self.out.print(f"  sign-on: {signed.recovery.action.value} — {signed.recovery.reason}")
        for event in shop.engine.journal.events("resync"):
            self.out.print(f"  engine: {event.message}")
        info = self.store.terminal(shop.terminal_id)
        now_local = shop.engine.current_batch().batch_no
        self.step(
            info is not None and now_local == info.batch_no,
            f"terminal and host agree on batch {now_local:06d}; the new journal's STANs "
            "cannot collide with the old batch's",
        )
        await self.trade(shop, 2)

    async def cause_network(self, shop: _Shop) -> None:
        self.out.rule("cause 3 — network: the settlement answer is lost (结算应答丢失)")
        self.core.set_faults(
            FaultScript(
                [
                    FaultRule(
                        FaultAction.DROP,
                        terminal_id=shop.terminal_id,
                        kind=Kind.SETTLEMENT,
                        count=1,
                    )
                ]
            )
        )
        batch_no = shop.engine.current_batch().batch_no
        try:
            await self.settle(shop)
            self.out.print("  [red]the settlement answer arrived after all[/]")
            met = False
        except TerminalError as exc:
            self.out.print(f"  [yellow]met[/]: {exc}")
            met = True
        finally:
            self.core.set_faults(None)
        host_batches = {b.batch_no: b for b in self.store.batches(shop.terminal_id)}
        closed = host_batches.get(batch_no)
        self.out.print(
            f"  the host closed batch {batch_no:06d}: "
            f"{closed.state.value if closed else '?'}; the terminal is still at step "
            f"'{shop.engine.current_batch().step}'"
        )
        self.doctor(shop)
        again = await self.settle(shop)
        self.step(
            met and again.batch_no == batch_no and again.balanced is True,
            f"settle pressed again: batch {again.batch_no:06d} {again.close_reason} "
            f"(resumed from '{again.resumed_from}', the host repeated its answer); "
            f"next batch {again.next_batch_no:06d}",
        )
        await self.trade(shop, 2)

    async def cause_host_change(self, shop: _Shop) -> None:
        self.out.rule("cause 4 — mismatch after a host-side change (后台批次号变更)")
        old = shop.engine.current_batch().batch_no
        new = self.core.advance_batch(shop.terminal_id, "host migration renumbered the batch")
        self.out.print(
            f"  the back office advances {shop.name}'s host batch {old:06d} → {new:06d} "
            f"while the terminal holds its approvals"
        )
        card = self.random.choice(GOOD_CARDS)
        flow = shop.engine.sale_flow(draw_amount_fen(self.random), card.pan, expiry=card.expiry)
        result = await self._run_watching(shop, flow)
        errors = shop.engine.journal.events("batch_error")
        recoveries = shop.engine.journal.events("recovery")
        if recoveries:
            self.out.print(f"  engine recovery: {recoveries[-1].message}")
        self.step(
            bool(errors) and result.approved and result.batch_no == new,
            f"the sale was retried in batch {result.batch_no:06d}: "
            f"{'approved' if result.approved else result.response_code}",
        )

    async def evening(self) -> Table:
        self.out.rule("21:00 — every terminal settles (结算)")
        table = Table(title="settlement 结算")
        for column in ("shop", "batch", "sales", "credits", "result"):
            table.add_column(column)
        for shop in self.shops:
            result = await self.settle(shop)
            totals = result.terminal_totals
            debit = credit = "-"
            if totals is not None:
                debit_fen = totals.domestic.debit_amount_fen + totals.foreign.debit_amount_fen
                debit_count = totals.domestic.debit_count + totals.foreign.debit_count
                credit_fen = totals.domestic.credit_amount_fen + totals.foreign.credit_amount_fen
                credit_count = totals.domestic.credit_count + totals.foreign.credit_count
                debit = f"{debit_count} / ¥{format_fen(debit_fen)}"
                credit = f"{credit_count} / ¥{format_fen(credit_fen)}"
            ok = result.balanced is True
            self.steps_ok.append(ok)
            verdict = "[green]balanced 对账平[/]" if ok else f"[red]{result.close_reason}[/]"
            table.add_row(shop.name, f"{result.batch_no:06d}", debit, credit, verdict)
        return table

    def report(self) -> bool:
        self.out.rule("the report: nothing lost, nothing counted twice")
        table = Table(title="approvals: terminal journals vs host")
        for column in ("shop", "journals", "approved on terminal", "approved on host", "match"):
            table.add_column(column)
        snapshot = take_snapshot(
            {shop.terminal_id: shop.journals for shop in self.shops},
            self.store,
            day=0,
            final=True,
        )
        for shop in self.shops:
            on_terminal = sorted(
                (t.batch_no, t.stan, t.amount_fen)
                for t in snapshot.terminal_txns
                if t.terminal_id == shop.terminal_id and t.status.value == "approved"
            )
            on_host = sorted(
                (h.batch_no, h.stan, h.amount_fen)
                for h in snapshot.host_txns
                if h.terminal_id == shop.terminal_id and h.status.value == "approved"
            )
            same = on_terminal == on_host
            self.steps_ok.append(same)
            table.add_row(
                shop.name,
                str(len(shop.journals)),
                f"{len(on_terminal)} / ¥{format_fen(sum(a for _, _, a in on_terminal))}",
                f"{len(on_host)} / ¥{format_fen(sum(a for _, _, a in on_host))}",
                "[green]same[/]" if same else "[red]DIFFERENT[/]",
            )
        self.out.print(table)
        for exc in snapshot.host_exceptions:
            self.out.print(f"  exception 差错 ({exc.kind}) for {exc.terminal_id}: {exc.cause}")
        violations = check(snapshot)
        for violation in violations:
            self.out.print(f"  [red]{violation.render()}[/]")
        if not violations:
            self.out.print(
                "  [green]DESIGN.md invariants 1–6 hold over every journal and the host store[/]"
            )
        return not violations


def _is_batch_error(frame: bytes) -> bool:
    try:
        frames = FrameReader().feed(frame)
        return (
            bool(frames) and getattr(decode_message(frames[0].body), "response_code", None) == "77"
        )
    except PosbatchError:
        return False


async def _day(out: Console, data_dir: Path) -> bool:
    demo = _Demo(out, data_dir)
    await demo.start()
    try:
        typo_shop, fault_shop, network_shop, change_shop = demo.shops
        await demo.morning()
        await demo.cause_typo(typo_shop)
        await demo.cause_terminal_fault(fault_shop)
        await demo.cause_network(network_shop)
        await demo.cause_host_change(change_shop)
        out.print(await demo.evening())
        held = demo.report()
    finally:
        await demo.close()
    return held and all(demo.steps_ok)


def run_main_job(console: Console | None = None, *, keep_dir: Path | None = None) -> int:
    """Run the demo day; 0 when every cause was resolved and every check held.

    ``keep_dir``: trade in that (new) directory and keep it, for the console to show.
    """
    out = console or Console()
    started = time.perf_counter()
    out.print(
        Panel.fit(
            "posbatch — a terminal's batch always settles, and no transaction is lost or "
            "counted twice.\n一个终端的批次总能结算，交易不丢失、不重复。",
            title="posbatch demo",
        )
    )
    with (
        tempfile.TemporaryDirectory(prefix="posbatch-demo-")
        if keep_dir is None
        else contextlib.nullcontext(str(keep_dir))
    ) as directory:
        try:
            ok = asyncio.run(_day(out, Path(directory)))
        except PosbatchError as exc:
            out.print(f"[red]the demo failed: {exc}[/]")
            ok = False
    elapsed = time.perf_counter() - started
    verdict = "[green]every batch settled, nothing lost[/]" if ok else "[red]a check failed[/]"
    out.print(f"{verdict} — {elapsed:.1f} s")
    return 0 if ok else 1
