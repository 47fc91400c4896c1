"""The seed's Python Kafka client (shared/seed/kafka-messaging-pattern.md), unchanged, with a
command line for the interop tests:

    seed_client.py produce BOOTSTRAP TOPIC COUNT
        sends COUNT seed user events with KafkaMessageProducer.send (acks=all, gzip, JSON),
        key "user-<n>", header correlation_id "corr-<n>"; prints one line per record sent.
    seed_client.py consume BOOTSTRAP TOPIC GROUP COUNT
        reads COUNT records with KafkaMessageConsumer.consume (manual commit after each);
        prints each value as a JSON line, then each record's key and headers as seen by aiokafka.
    seed_client.py reply BOOTSTRAP TOPIC COUNT
        answers COUNT requests read from TOPIC the way Spring's @SendTo does: {"echo": <request>,
        "by": "python"} to the topic in kafka_replyTopic (and kafka_replyPartition), with the
        request's key and its kafka_correlationId copied; prints one line per answer.
"""

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

logger = logging.getLogger(__name__)


# --- the seed's producer -------------------------------------------------------------------------


@dataclass
class KafkaConfig:
    bootstrap_servers: str
    client_id: str
    acks: str = "all"  # Wait for all replicas
    retries: int = 3
    compression: str = "gzip"


class KafkaMessageProducer:
    """Async Kafka producer with retry and serialization."""

    def __init__(self, config: KafkaConfig):
        self.config = config
        self._producer: AIOKafkaProducer | None = None

    async def start(self):
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap_servers,
            client_id=self.config.client_id,
            acks=self.config.acks,
            compression_type=self.config.compression,
            value_serializer=lambda v: json.dumps(v).encode("utf-8"),
            key_serializer=lambda k: k.encode("utf-8") if k else None,
        )
        await self._producer.start()

    async def stop(self):
        if self._producer:
            await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: dict[str, Any],
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not self._producer:
            raise RuntimeError("Producer not started")

        kafka_headers = (
            [(k, v.encode()) for k, v in headers.items()]
            if headers
            else None
        )
        await self._producer.send_and_wait(
            topic=topic,
            value=value,
            key=key,
            headers=kafka_headers,
        )

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *args):
        await self.stop()


# --- the seed's consumer -------------------------------------------------------------------------


@dataclass
class ConsumerConfig:
    bootstrap_servers: str
    group_id: str
    topics: list[str]
    auto_offset_reset: str = "earliest"
    enable_auto_commit: bool = False  # Manual commit for reliability


class KafkaMessageConsumer:
    """Async Kafka consumer with manual commit and error handling."""

    def __init__(self, config: ConsumerConfig):
        self.config = config
        self._consumer: AIOKafkaConsumer | None = None
        self._running = False

    async def start(self):
        self._consumer = AIOKafkaConsumer(
            *self.config.topics,
            bootstrap_servers=self.config.bootstrap_servers,
            group_id=self.config.group_id,
            auto_offset_reset=self.config.auto_offset_reset,
            enable_auto_commit=self.config.enable_auto_commit,
            value_deserializer=lambda v: json.loads(v.decode("utf-8")),
        )
        await self._consumer.start()
        self._running = True

    async def stop(self):
        self._running = False
        if self._consumer:
            await self._consumer.stop()

    async def consume(
        self,
        handler: Callable[[dict], Awaitable[None]],
        max_messages: int | None = None,
    ) -> None:
        """Consume messages with manual commit after successful processing."""
        if not self._consumer:
            raise RuntimeError("Consumer not started")

        count = 0
        async for msg in self._consumer:
            if not self._running:
                break

            try:
                await handler(msg.value)
                await self._consumer.commit()
                count += 1

                if max_messages and count >= max_messages:
                    break
            except Exception as e:
                logger.error(
                    f"Error processing message: {e}",
                    extra={"topic": msg.topic, "offset": msg.offset},
                )

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *args):
        await self.stop()


# --- the interop tests' command line -------------------------------------------------------------


async def produce(bootstrap: str, topic: str, count: int) -> None:
    config = KafkaConfig(bootstrap_servers=bootstrap, client_id="seed-python-producer")
    async with KafkaMessageProducer(config) as producer:
        for n in range(count):
            await producer.send(
                topic=topic,
                key=f"user-{n}",
                value={
                    "event_type": "user_created",
                    "user_id": str(n),
                    "email": f"user{n}@example.com",
                    "timestamp": datetime.utcnow().isoformat(),
                },
                headers={"correlation_id": f"corr-{n}"},
            )
            print(f"sent user-{n}", flush=True)


async def consume(bootstrap: str, topic: str, group: str, count: int) -> None:
    config = ConsumerConfig(bootstrap_servers=bootstrap, group_id=group, topics=[topic])

    async def handle_message(message: dict) -> None:
        print("value " + json.dumps(message, sort_keys=True), flush=True)

    async with KafkaMessageConsumer(config) as consumer:
        await asyncio.wait_for(consumer.consume(handle_message, max_messages=count), timeout=60)

    # The seed's handler only sees values; read the same records once more for keys and headers.
    raw = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await raw.start()
    try:
        seen = 0
        while seen < count:
            batch = await asyncio.wait_for(raw.getmany(timeout_ms=1000), timeout=60)
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    key = record.key.decode() if record.key is not None else None
                    print("record " + json.dumps({"key": key, "headers": headers}, sort_keys=True), flush=True)
                    seen += 1
    finally:
        await raw.stop()


async def reply(bootstrap: str, topic: str, count: int) -> None:
    requests = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await requests.start()
    await producer.start()
    try:
        answered = 0
        while answered < count:
            batch = await asyncio.wait_for(requests.getmany(timeout_ms=1000), timeout=60)
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers)
                    partition = headers.get("kafka_replyPartition")
                    answer = {"echo": json.loads(record.value), "by": "python"}
                    await producer.send_and_wait(
                        headers["kafka_replyTopic"].decode(),
                        json.dumps(answer).encode(),
                        key=record.key,
                        partition=int.from_bytes(partition, "big") if partition else None,
                        headers=[("kafka_correlationId", headers["kafka_correlationId"])],
                    )
                    answered += 1
                    print(f"answered {record.offset}", flush=True)
    finally:
        await requests.stop()
        await producer.stop()


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "produce":
        asyncio.run(produce(args[0], args[1], int(args[2])))
    elif command == "consume":
        asyncio.run(consume(args[0], args[1], args[2], int(args[3])))
    elif command == "reply":
        asyncio.run(reply(args[0], args[1], int(args[2])))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
