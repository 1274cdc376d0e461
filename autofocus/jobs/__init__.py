"""Focus jobs: the job record, its SQLite store, the event fan-out and the worker queue."""

from autofocus.jobs.events import EventBroker, Subscription
from autofocus.jobs.manager import (
    IdempotencyConflict,
    InvalidRequest,
    JobManager,
    JobNotFound,
    MicroscopeSnapshot,
    NotReady,
    QueueFull,
)
from autofocus.jobs.models import TERMINAL_STATES, Job, JobState
from autofocus.jobs.store import JobStore, StoredEvent

__all__ = [
    "TERMINAL_STATES",
    "EventBroker",
    "IdempotencyConflict",
    "InvalidRequest",
    "Job",
    "JobManager",
    "JobNotFound",
    "JobState",
    "JobStore",
    "MicroscopeSnapshot",
    "NotReady",
    "QueueFull",
    "StoredEvent",
    "Subscription",
]
