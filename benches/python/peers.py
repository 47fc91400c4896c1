"""Python peers of benches/throughput.rs, on the records it produced. Each command prints one
line `result <records per second>` (first record to last, as the Rust scenarios measure).

    peers.py seed-consume BOOTSTRAP TOPIC GROUP COUNT
        the seed's KafkaMessageConsumer (aiokafka, JSON values, commit awaited after each record)
    peers.py confluent-consume BOOTSTRAP TOPIC GROUP COUNT
        confluent-kafka (librdkafka): JSON values, offsets stored per record, committed every
        second, records taken 500 at a time: the strongest Python peer
    peers.py seed-produce BOOTSTRAP TOPIC COUNT
        the seed's KafkaMessageProducer.send_batch (acks=all, gzip, JSON)
"""

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "python"))

from seed_client import (  # noqa: E402  (the seed's classes, unchanged)
    ConsumerConfig,
    KafkaConfig,
    KafkaMessageConsumer,
    KafkaMessageProducer,
)


class Clock:
    def __init__(self) -> None:
        self.first = None
        self.count = 0

    def hit(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.count += 1

    def rate(self) -> float:
        return (self.count - 1) / max(time.perf_counter() - self.first, 1e-9)


async def seed_consume(bootstrap: str, topic: str, group: str, count: int) -> float:
    clock = Clock()

    async def handler(_value: dict) -> None:
        clock.hit()

    config = ConsumerConfig(bootstrap_servers=bootstrap, group_id=group, topics=[topic])
    async with KafkaMessageConsumer(config) as consumer:
        await asyncio.wait_for(consumer.consume(handler, max_messages=count), timeout=1800)
    return clock.rate()


def confluent_consume(bootstrap: str, topic: str, group: str, count: int) -> float:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
        }
    )
    consumer.subscribe([topic])
    clock = Clock()
    deadline = time.monotonic() + 600
    while clock.count < count and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=500, timeout=1.0):
            if message.error():
                continue
            json.loads(message.value())
            consumer.store_offsets(message=message)
            clock.hit()
    consumer.close()
    return clock.rate()


class BatchProducer(KafkaMessageProducer):
    """The seed's send_batch, made to run. As written it fails twice: it encodes keys and values
    itself although the seed's producer has serializers (which then get bytes: AttributeError),
    and it calls `send_and_wait(topic, batch=batch)`, which aiokafka does not have (TypeError).
    Here the serializers encode, and batches go out with aiokafka's
    `send_batch(batch, topic, partition=...)`, spread over the partitions."""

    async def send_batch(self, topic: str, messages: list) -> None:
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        turn = 0
        batch = producer.create_batch()
        pending = []
        for key, value in messages:
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partitions[turn % len(partitions)]))
                turn += 1
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        if batch.record_count() > 0:
            pending.append(await producer.send_batch(batch, topic, partition=partitions[turn % len(partitions)]))
        await asyncio.gather(*pending)


async def seed_produce(bootstrap: str, topic: str, count: int) -> float:
    messages = [
        (
            f"user-{n % 1000}",
            {
                "event_type": "user_updated",
                "user_id": f"user-{n}",
                "email": "user@example.com",
                "timestamp": "2026-11-28T00:00:00Z",
            },
        )
        for n in range(count)
    ]
    config = KafkaConfig(bootstrap_servers=bootstrap, client_id="seed-python-bench")
    async with BatchProducer(config) as producer:
        started = time.perf_counter()
        await producer.send_batch(topic, messages)
        return count / (time.perf_counter() - started)


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "seed-consume":
        rate = asyncio.run(seed_consume(args[0], args[1], args[2], int(args[3])))
    elif command == "confluent-consume":
        rate = confluent_consume(args[0], args[1], args[2], int(args[3]))
    elif command == "seed-produce":
        rate = asyncio.run(seed_produce(args[0], args[1], int(args[2])))
    else:
        sys.exit(f"unknown command {command}")
    print(f"result {rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
