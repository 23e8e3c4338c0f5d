"""The simulator process: consume sese.023 instructions on csd.instructions, answer with
sese.024 status advice and sese.025 confirmations on csd.status, rules over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import TypeAdapter

from bo_common.consumer import dead_letter_payload
from bo_common.kafka import make_consumer, start_producer, start_with_retry
from bo_common.logs import configure_logging, get_logger
from bo_common.problems import install_problem_handlers
from bo_common.topics import CSD_INSTRUCTIONS, CSD_STATUS, dead_letter_topic
from bo_iso20022 import (
    InvalidMessage,
    StatusAdvice,
    parse_sese023,
    render_sese024,
    render_sese025,
)
from csd_simulator.config import Settings
from csd_simulator.domain import Rule, answer

log = get_logger(__name__)
ANSWERED = Counter("bo_csd_instructions_answered_total", "Instructions answered", ["outcome"])
RULES = TypeAdapter(list[Rule])


class Simulator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules: list[Rule] = []
        if settings.rules_file:
            self.rules = RULES.validate_json(Path(settings.rules_file).read_bytes())
        self._stopping = False
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None

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
                deliveries = []
                for records in batches.values():
                    for record in records:
                        deliveries += await self._answer(record.value or b"", record)
                await asyncio.gather(*deliveries)
                if batches:
                    await self.consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def _answer(
        self, raw: bytes, record: ConsumerRecord[bytes, bytes]
    ) -> list[asyncio.Future[object]]:
        """Read a sese.023 and answer it on csd.status (sese.024, then sese.025 if it
        settles); a message that is not a valid sese.023 goes to csd.instructions.dlq."""
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
            ]
        futures = []
        key = instruction.instruction_id.encode()
        for message in answer(instruction, self.rules):
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

    @app.get("/v1/rules", response_model=list[Rule])
    async def get_rules() -> list[Rule]:
        return simulator.rules

    @app.put(
        "/v1/rules",
        response_model=list[Rule],
        summary="Replace the behaviour rules (first match wins; default settles)",
    )
    async def put_rules(rules: list[Rule]) -> list[Rule]:
        simulator.rules = rules
        log.info("rules_replaced", rules=json.loads(RULES.dump_json(rules)))
        return simulator.rules

    return app
