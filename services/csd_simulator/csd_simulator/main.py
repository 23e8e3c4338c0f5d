"""The simulator process: consume sese.023 instructions on csd.instructions, answer with
sese.024 status advice and sese.025 confirmations on csd.status, rules over HTTP.

Instructions kept for their intended settlement date (settle_on "intended_date") are stored
in a small JSON file (PendingStore) written before the consumer commits their offsets, and
a background task settles the due ones every settle_check_interval_s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from pydantic import BaseModel, TypeAdapter

from bo_common.consumer import dead_letter_payload
from bo_common.kafka import make_consumer, start_producer, start_with_retry
from bo_common.logs import configure_logging, get_logger
from bo_common.problems import install_problem_handlers
from bo_common.topics import CSD_INSTRUCTIONS, CSD_STATUS, dead_letter_topic
from bo_iso20022 import (
    InvalidMessage,
    SettlementInstruction,
    StatusAdvice,
    parse_sese023,
    render_sese024,
    render_sese025,
)
from csd_simulator.config import Settings
from csd_simulator.domain import (
    Answer,
    Rule,
    SettleOn,
    Simulation,
    is_due,
    receive,
    settle_due,
)

log = get_logger(__name__)
ANSWERED = Counter("bo_csd_instructions_answered_total", "Instructions answered", ["outcome"])
PENDING = Gauge("bo_csd_instructions_pending", "Matched instructions kept for their date")
RULES = TypeAdapter(list[Rule])
DOCUMENT = TypeAdapter(list[Rule] | Simulation)


class PendingInstruction(BaseModel):
    instruction_id: str
    settlement_date: date
    trade_ids: list[str]


class PendingStore:
    """Matched instructions waiting for their intended settlement date, as their sese.023
    XML keyed by instruction id, in one JSON file replaced atomically (write, fsync,
    rename); the file is removed when nothing waits."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, bytes]:
        if not self.path.exists():
            return {}
        stored: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8"))
        return {instruction_id: xml.encode() for instruction_id, xml in stored.items()}

    def save(self, pending: dict[str, bytes]) -> None:
        if not pending:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump({k: v.decode() for k, v in pending.items()}, file, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


def pending_path(settings: Settings) -> Path:
    if settings.pending_file:
        return Path(settings.pending_file)
    broker = re.sub(r"[^A-Za-z0-9.-]+", "_", settings.kafka.bootstrap_servers)
    return Path("var") / "csd_simulator" / f"pending-{broker}.json"


class Simulator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules: list[Rule] = []
        self.settle_on_override: SettleOn | None = None
        self.as_of: date | None = None
        if settings.rules_file:
            self.replace(DOCUMENT.validate_json(Path(settings.rules_file).read_bytes()))
        self.store = PendingStore(pending_path(settings))
        # Kept instructions: id -> (parsed, the sese.023 as received).
        self.pending: dict[str, tuple[SettlementInstruction, bytes]] = {
            instruction_id: (parse_sese023(raw), raw)
            for instruction_id, raw in self.store.load().items()
        }
        PENDING.set(len(self.pending))
        self._lock = asyncio.Lock()
        self._stopping = False
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None

    @property
    def settle_on(self) -> SettleOn:
        return self.settle_on_override or self.settings.settle_on

    def today(self) -> date:
        return self.as_of or datetime.now(UTC).date()

    def replace(self, document: list[Rule] | Simulation) -> None:
        """A list replaces the rules only; a document replaces rules and controls alike."""
        if isinstance(document, list):
            self.rules = document
            return
        self.rules = document.rules
        self.settle_on_override = document.settle_on
        self.as_of = document.as_of

    def document(self) -> Simulation:
        return Simulation(rules=self.rules, settle_on=self.settle_on, as_of=self.as_of)

    def _save_pending(self) -> None:
        self.store.save({k: raw for k, (_, raw) in self.pending.items()})
        PENDING.set(len(self.pending))

    async def run(self) -> None:
        kafka = self.settings.kafka
        self.producer = await start_producer(kafka, client_id="csd_simulator")

        async def start() -> AIOKafkaConsumer:
            consumer = make_consumer(
                kafka,
                topics=[CSD_INSTRUCTIONS],
                group_id="csd_simulator",
                client_id=f"csd_simulator-{uuid.uuid4().hex[:6]}",
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        self.consumer = await start_with_retry(start, what="csd consumer")
        try:
            while not self._stopping:
                batches = await self.consumer.getmany(timeout_ms=200)
                if not batches:
                    continue
                async with self._lock:
                    deliveries = []
                    kept = False
                    for records in batches.values():
                        for record in records:
                            sent, keep = await self._answer(record.value or b"", record)
                            deliveries += sent
                            kept = kept or keep
                    await asyncio.gather(*deliveries)
                    # Kept instructions are on disk before their offsets are committed.
                    if kept:
                        self._save_pending()
                    await self.consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def settle_due_ones(self) -> int:
        """Answer every kept instruction that is due, under the rules in force now; drop it
        from the store once its answers are delivered. Returns how many were answered."""
        async with self._lock:
            today, settle_on = self.today(), self.settle_on
            due = [
                (instruction_id, instruction)
                for instruction_id, (instruction, _) in self.pending.items()
                if is_due(instruction, settle_on, today)
            ]
            if not due:
                return 0
            deliveries = []
            for _, instruction in due:
                deliveries += await self._send(instruction, settle_due(instruction, self.rules))
            await asyncio.gather(*deliveries)
            for instruction_id, _ in due:
                self.pending.pop(instruction_id, None)
            self._save_pending()
            log.info("kept_instructions_settled", count=len(due), as_of=today.isoformat())
            return len(due)

    async def run_settlement_cycle(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.settle_check_interval_s)
            if self.producer is None:
                continue
            try:
                await self.settle_due_ones()
            except Exception:
                log.exception("settlement_cycle_failed")

    async def _answer(
        self, raw: bytes, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[list[asyncio.Future[object]], bool]:
        """Read a sese.023 and answer it on csd.status (sese.024, then sese.025 if it
        settles now); a message that is not a valid sese.023 goes to csd.instructions.dlq.
        Also says whether the instruction is kept to settle on its date."""
        if self.producer is None:
            raise RuntimeError("producer not started")
        try:
            instruction = parse_sese023(raw)
        except InvalidMessage as error:
            log.error("malformed_instruction", error=str(error))
            return [
                await self.producer.send(
                    dead_letter_topic(CSD_INSTRUCTIONS),
                    dead_letter_payload(
                        record, error=str(error), consumer="csd_simulator", attempts=1
                    ),
                    key=record.key,
                )
            ], False
        steps, keep = receive(instruction, self.rules, self.settle_on, self.today())
        if keep:
            self.pending[instruction.instruction_id] = (instruction, raw)
        return await self._send(instruction, steps), keep

    async def _send(
        self, instruction: SettlementInstruction, steps: list[Answer]
    ) -> list[asyncio.Future[object]]:
        if self.producer is None:
            raise RuntimeError("producer not started")
        futures = []
        key = instruction.instruction_id.encode()
        for message in steps:
            if isinstance(message, StatusAdvice):
                payload = render_sese024(message)
            else:
                payload = render_sese025(message)
            ANSWERED.labels(message.status).inc()
            futures.append(await self.producer.send(CSD_STATUS, payload, key=key))
        return futures

    async def stop(self) -> None:
        self._stopping = True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)
    simulator = Simulator(settings)
    tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks.append(asyncio.create_task(simulator.run()))
        tasks.append(asyncio.create_task(simulator.run_settlement_cycle()))
        yield
        await simulator.stop()
        await asyncio.wait(tasks, timeout=10)

    app = FastAPI(
        title="CSD simulator",
        lifespan=lifespan,
        description="Development stand-in for the depository. Not for production.",
    )
    install_problem_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "csd_simulator"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = simulator.consumer is not None and not any(t.done() for t in tasks)
        return JSONResponse(
            {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/rules", response_model=Simulation)
    async def get_rules() -> Simulation:
        """The rules document in force: rules, settle_on (effective) and as_of."""
        return simulator.document()

    @app.put(
        "/v1/rules",
        response_model=Simulation,
        summary="Replace the behaviour rules (first match wins; default settles)",
        description=(
            "A list replaces the rules only. A document {rules, settle_on, as_of} replaces "
            "all three: settle_on 'receipt' or 'intended_date' (omitted: the configured "
            "CSD_SIMULATOR_SETTLE_ON); as_of, a simulation control, the date the depository "
            "takes as today (omitted: the UTC date). Answers the document in force."
        ),
    )
    async def put_rules(document: list[Rule] | Simulation) -> Simulation:
        simulator.replace(document)
        log.info(
            "rules_replaced",
            rules=json.loads(RULES.dump_json(simulator.rules)),
            settle_on=simulator.settle_on,
            as_of=simulator.as_of.isoformat() if simulator.as_of else None,
        )
        return simulator.document()

    @app.get("/v1/pending", response_model=list[PendingInstruction])
    async def pending() -> list[PendingInstruction]:
        """Matched instructions kept for their intended settlement date."""
        return [
            PendingInstruction(
                instruction_id=instruction.instruction_id,
                settlement_date=instruction.settlement_date,
                trade_ids=list(instruction.trade_ids),
            )
            for instruction, _ in simulator.pending.values()
        ]

    return app
