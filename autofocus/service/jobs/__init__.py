"""Focus jobs: the job record, its SQLite store, the event fan-out and the worker queue."""

from autofocus.service.jobs.events import EventBroker, Subscription
from autofocus.service.jobs.manager import (
    IdempotencyConflict,
    InvalidRequest,
    JobManager,
    JobNotFound,
    NotReady,
    QueueFull,
)
from autofocus.service.jobs.models import TERMINAL_STATES, Job, JobState
from autofocus.service.jobs.store import JobStore, StoredEvent
from autofocus.service.jobs.worker import MicroscopeSnapshot

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
