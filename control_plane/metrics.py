"""Prometheus metrics, served at `/metrics`."""

from prometheus_client import Counter, Gauge, Histogram

EXECUTIONS_FINISHED = Counter("bifrost_executions_finished_total", "Executions that ended, by status.", ["status"])
EXECUTIONS_CREATED = Counter("bifrost_executions_created_total", "Executions requested, by mode.", ["mode"])
QUEUE_DEPTH = Gauge(
    "bifrost_queue_depth", "Executions waiting to be launched: not claimed yet, or held back by the limits."
)
RUNNING = Gauge("bifrost_executions_running", "Executions launched and not yet finished.")
DISPATCH_LATENCY = Histogram(
    "bifrost_dispatch_latency_seconds",
    "From the execution's creation to its runner being launched.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RUN_DURATION = Histogram(
    "bifrost_run_duration_seconds",
    "From the runner's start to its finish.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
EVENTS_INGESTED = Counter("bifrost_events_ingested_total", "Runner events written to the database, by type.", ["type"])
EVENTS_REJECTED = Counter(
    "bifrost_events_rejected_total",
    "Runner events dropped unapplied, by reason: `malformed`, or `wrong_subject` (an execution id other than the "
    "subject's: a runner reporting for another execution).",
    ["reason"],
)
EVENTS_MADE_STORABLE = Counter(
    "bifrost_events_made_storable_total",
    "Runner events that held values no database stores or no answer carries back, stored made storable.",
    ["type"],
)
