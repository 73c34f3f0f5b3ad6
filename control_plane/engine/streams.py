"""The JetStream streams and durable consumers the engine relies on, created or updated at start."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from bifrost._internal.protocol import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_WILDCARD,
    MAX_EVENT_BYTES,
    QUEUE_STREAM,
    QUEUE_SUBJECT,
)

logger = logging.getLogger(__name__)

INGEST_CONSUMER = "bifrost-ingest"
DISPATCH_CONSUMER = "bifrost-dispatch"

# Runners retry a publish whose ack was lost; a message id seen within this window is dropped as a duplicate.
DUPLICATE_WINDOW_SECONDS = 10 * 60.0
# Events stay in the stream for a day after ingestion: a control plane that was down for less loses nothing.
EVENTS_MAX_AGE_SECONDS = 24 * 3600.0

EVENTS_STREAM_CONFIG = StreamConfig(
    name=EVENTS_STREAM,
    description="Runner events of every execution, ingested by the control plane.",
    subjects=[EVENTS_SUBJECT_WILDCARD],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    max_age=EVENTS_MAX_AGE_SECONDS,
    max_msg_size=MAX_EVENT_BYTES,
    duplicate_window=DUPLICATE_WINDOW_SECONDS,
)

QUEUE_STREAM_CONFIG = StreamConfig(
    name=QUEUE_STREAM,
    description="Ids of executions recorded to be launched: each wakes a dispatcher.",
    subjects=[QUEUE_SUBJECT],
    retention=RetentionPolicy.WORK_QUEUE,
    storage=StorageType.FILE,
    duplicate_window=DUPLICATE_WINDOW_SECONDS,
)


# Unacked events of a control plane that died are redelivered after this long. Short, because ingest waits
# that long for a missing event before it gives up on it; a commit taking longer only causes redeliveries,
# which ingest skips.
INGEST_ACK_WAIT_SECONDS = 5.0


def ingest_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=INGEST_CONSUMER,
        filter_subject=EVENTS_SUBJECT_WILDCARD,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=INGEST_ACK_WAIT_SECONDS,
        max_ack_pending=50_000,
    )


# A queue message only wakes a dispatcher (what waits is in the database), which acks it on receipt; one a
# replica took and died before acking comes again after this long, to wake another.
DISPATCH_ACK_WAIT_SECONDS = 4.0


def dispatch_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DISPATCH_CONSUMER,
        filter_subject=QUEUE_SUBJECT,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=DISPATCH_ACK_WAIT_SECONDS,
        max_ack_pending=5_000,
    )


# After the first message of a batch, how long a fetch may wait for more that are not there yet.
DRAIN_SECONDS = 0.005


async def next_batch(subscription: JetStreamContext.PullSubscription, limit: int, wait: float) -> list[Msg]:
    """Wait up to `wait` seconds for one message, then take up to `limit` in all of what is already there.
    (One fetch of `limit` would hold on to its first messages until the batch fills or `wait` runs out.)"""
    try:
        first = await subscription.fetch(1, timeout=wait)
    except TimeoutError:
        return []
    if limit == 1:
        return first
    try:
        return first + await subscription.fetch(limit - 1, timeout=DRAIN_SECONDS)
    except TimeoutError:
        return first


async def ensure_streams(js: JetStreamContext) -> None:
    for config in (EVENTS_STREAM_CONFIG, QUEUE_STREAM_CONFIG):
        try:
            await js.add_stream(config=config)
        except BadRequestError:
            logger.info("updating the configuration of stream %s", config.name)
            await js.update_stream(config=config)
    # Created or, when an earlier version made it with other settings (a longer ack wait), updated.
    await js.add_consumer(QUEUE_STREAM, config=dispatch_consumer_config())
