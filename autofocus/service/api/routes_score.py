"""`POST /v1/score`: score frames the client acquired itself, with any scorer."""

from __future__ import annotations

import math
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from autofocus.errors import ImageError
from autofocus.service.api.images import (
    MAX_FRAME_PIXELS,
    ByteBudget,
    check_budget,
    decode_frames,
)
from autofocus.service.api.schemas import ScoreOut, problem
from autofocus.service.api.security import require_token
from autofocus.service.jobs.manager import InvalidRequest, JobManager
from autofocus.service.jobs.worker import JobScorer

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["scoring"])

MAX_FILES = 256
MAX_FRAMES = 1024


@router.post(
    "/score",
    response_model=ScoreOut,
    summary="Score uploaded frames",
    responses=problem(400, 401, 403, 413, 415, 421, 422, 503),
)
async def score_frames(
    request: Request,
    files: Annotated[
        list[UploadFile], File(description="TIFF, PNG or NPY files (multi-page TIFF / 3-D NPY ok).")
    ],
    scorer: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Default: the daemon's.")
    ] = None,
) -> ScoreOut:
    """Score every frame in the uploaded files (higher is sharper). Corrupt or unsupported
    files answer 422 naming the file; bodies over `max_upload_mb`, uploads decoding to more
    than `score_max_pixels` or needing more than `score_memory_mb` answer 413 (from the
    headers, before decoding); while other uploads hold the shared memory budget a request
    waits up to `score_wait_s`, then answers 503. The microscope is not involved."""
    manager: JobManager = request.app.state.manager
    if len(files) > MAX_FILES:
        raise InvalidRequest(f"at most {MAX_FILES} files per request, got {len(files)}")
    name = scorer or manager.settings.focus.scorer
    # Building a scorer may load a model (seconds): keep it off the event loop.
    scorer_obj = JobScorer(
        await run_in_threadpool(manager.scorer, name), manager.metrics, source="upload"
    )
    uploads = [(f.filename or f"file{i}", await f.read()) for i, f in enumerate(files)]
    settings = manager.settings
    memory = _memory_budget(request)
    return await run_in_threadpool(
        _score, scorer_obj, uploads, settings.score_max_pixels, memory, settings.score_wait_s
    )


def _memory_budget(request: Request) -> ByteBudget:
    budget = getattr(request.app.state, "score_memory", None)
    if budget is None:  # first upload (one event loop: no race between check and set)
        mib = request.app.state.manager.settings.score_memory_mb
        budget = request.app.state.score_memory = ByteBudget(int(mib * 2**20))
    return budget


def _score(
    scorer: JobScorer,
    uploads: list[tuple[str, bytes]],
    budget: int,
    memory: ByteBudget,
    wait_s: float,
) -> ScoreOut:
    # Headers first: a request over its pixel budget, or needing more memory than all
    # uploads may share, is refused before anything is decoded; one that fits waits (up to
    # `wait_s`) for room in the shared budget, then decodes and scores.
    nbytes = check_budget(uploads, budget)
    with memory.reserve(nbytes, wait_s):
        return _decode_and_score(scorer, uploads, budget)


def _decode_and_score(
    scorer: JobScorer, uploads: list[tuple[str, bytes]], budget: int
) -> ScoreOut:
    t0 = time.perf_counter()
    labels: list[tuple[str, int]] = []
    frames: list[np.ndarray] = []
    for filename, data in uploads:
        decoded = decode_frames(data, filename, max_pixels=min(MAX_FRAME_PIXELS, budget))
        frames.extend(decoded)
        labels.extend((filename, i) for i in range(len(decoded)))
        if len(frames) > MAX_FRAMES:
            raise InvalidRequest(f"at most {MAX_FRAMES} frames per request")
    usable = [i for i, f in enumerate(frames) if _usable(f)]
    scores = np.full(len(frames), np.nan)
    if usable:
        try:
            values = np.asarray(scorer.score([frames[i] for i in usable]), dtype=float)
        except ImageError:
            raise
        except (ValueError, TypeError) as exc:
            raise ImageError(f"the frames could not be scored: {exc}") from exc
        scores[usable] = values
    finite = [i for i in range(len(frames)) if math.isfinite(scores[i])]
    best = max(finite, key=lambda i: scores[i]) if finite else None
    return ScoreOut(
        scorer=scorer.name,
        scores=[
            {"file": f, "index": i, "score": float(s) if math.isfinite(s) else None}
            for (f, i), s in zip(labels, scores, strict=True)
        ],
        best=best,
        elapsed_s=round(time.perf_counter() - t0, 6),
    )


def _usable(frame: np.ndarray) -> bool:
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        return False
    return bool(frame.max() != frame.min())
