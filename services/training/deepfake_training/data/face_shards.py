"""Sharded, resumable face caching: one shard per hash bucket of record keys, each with an append-only manifest.

Many machines (a Kubernetes Indexed Job) or local processes run `deepfake-train cache --shard I/N` over the same
record list into one shared cache folder; each shard appends one JSON line per finished video to its own
`manifests/shard-I-of-N.jsonl` (no index rewrite per video), so a killed shard resumes where it stopped and a
finished shard re-runs as a no-op. `merge_shards` then writes the `index.json` that `FaceCache` reads. Faces come
from the same worker function as `FaceCache.build` (the serving face stage), so crops are identical either way.
A worker process that dies (a native decoder crash, the OOM killer) costs only the video it was running: the
pool is restarted and the videos that were in flight are retried one at a time to find the culprit.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from deepfake_core.settings import CoreSettings
from tqdm import tqdm

from deepfake_training.data.face_cache import (
    BuildReport,
    CacheEntry,
    FaceCache,
    SamplingRule,
    append_entry,
    cache_one_video,
    check_record_key,
    init_face_worker,
    read_manifest,
)
from deepfake_training.datasets.records import MediaRecord

log = logging.getLogger(__name__)

MANIFESTS = "manifests"
CRASHED = "the worker process died while caching this video (a crash in a native library or out of memory); skipped"

# (record, sampling, cache directory, face size) -> CacheEntry; module-level so a spawned worker can import it.
CacheJob = Callable[[MediaRecord, str, str, int], CacheEntry]


class ShardSpecError(ValueError):
    """`--shard` is not I/N with 0 <= I < N."""


def parse_shard(text: str) -> tuple[int, int]:
    """'3/16' -> (3, 16): shard 3 of 16 (0-based, as a Kubernetes Indexed Job's JOB_COMPLETION_INDEX)."""
    index_text, sep, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ShardSpecError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The shard of a record key: a stable hash bucket, the same on every machine and Python version."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % count


def shard_records(records: Iterable[MediaRecord], index: int, count: int) -> list[MediaRecord]:
    return [r for r in records if shard_of(r.key, count) == index]


def manifest_path(cache: FaceCache, index: int, count: int) -> Path:
    return cache.directory / MANIFESTS / f"shard-{index:05d}-of-{count:05d}.jsonl"


def build_shard(
    cache: FaceCache,
    records: Sequence[MediaRecord],
    settings: CoreSettings,
    sampling: SamplingRule = "uniform:32",
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
    job: CacheJob = cache_one_video,
) -> BuildReport:
    """Cache the faces of this shard's records not yet in its manifest; returns what was done.

    Videos recorded as failed are skipped (re-running a finished shard does nothing) unless `retry_failed`.
    `workers` processes detect faces in parallel (at least one worker process, so a crash never takes the
    shard down); `job` is the per-video function (tests pass one that crashes).
    """
    started = time.perf_counter()
    index, count = shard
    report = BuildReport()
    mine = shard_records(records, index, count)
    path = manifest_path(cache, index, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    (cache.directory / "faces").mkdir(exist_ok=True)
    recorded = read_manifest(path)
    todo: list[tuple[MediaRecord, str]] = []
    for record in mine:
        check_record_key(record.key)
        spec = sampling(record) if callable(sampling) else sampling
        entry = recorded.get(record.key)
        if entry is not None and entry.sampling == spec and _finished(cache, entry, retry_failed):
            report.skipped.append(record.key)
        else:
            todo.append((record, spec))
    jobs = [(record, spec, str(cache.directory), cache.face_size) for record, spec in todo]
    bar = tqdm(total=len(jobs), desc=f"shard {index}/{count}", unit="video", disable=not progress or not jobs)
    with path.open("a") as handle:
        for entry in run_isolated(jobs, settings.model_dump_json(), cache.face_size, max(1, workers), job):
            append_entry(handle, entry)
            {"ok": report.built, "no_face": report.no_face}.get(entry.status, []).append(entry.record.key)
            if entry.status == "failed":
                report.failed[entry.record.key] = entry.message
                log.warning("shard %d/%d: %s failed: %s", index, count, entry.record.key, entry.message)
            bar.update(1)
    bar.close()
    report.seconds = time.perf_counter() - started
    log.info("shard %d/%d of %s: %s", index, count, cache.directory, report.summary())
    return report


def _finished(cache: FaceCache, entry: CacheEntry, retry_failed: bool) -> bool:
    if entry.status == "failed":
        return not retry_failed
    return entry.status == "no_face" or (entry.file is not None and (cache.directory / entry.file).is_file())


Job = tuple[MediaRecord, str, str, int]


def run_isolated(
    jobs: Sequence[Job], settings_json: str, face_size: int, workers: int, job: CacheJob
) -> Iterator[CacheEntry]:
    """Run `job` over `jobs` in a spawned process pool, yielding one entry per job as each finishes.

    At most `workers` jobs are in flight, so when a worker dies (BrokenProcessPool) the suspects are known:
    alone, the one in flight is marked failed; otherwise each is retried alone in a fresh pool.
    """
    pending: deque[Job] = deque(jobs)
    suspects: deque[Job] = deque()
    while pending or suspects:
        if suspects:
            suspect = suspects.popleft()
            yield from _run_pool([suspect], settings_json, face_size, 1, job, suspects, alone=True)
            continue
        batch = list(pending)
        pending.clear()
        yield from _run_pool(batch, settings_json, face_size, workers, job, suspects, alone=False, rest=pending)


def _run_pool(
    jobs: list[Job],
    settings_json: str,
    face_size: int,
    workers: int,
    job: CacheJob,
    suspects: deque[Job],
    alone: bool,
    rest: deque[Job] | None = None,
) -> Iterator[CacheEntry]:
    # spawn, not fork: the parent may hold torch/OpenMP threads, which a forked child inherits broken.
    context = multiprocessing.get_context("spawn")
    queue: deque[Job] = deque(jobs)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_face_worker, initargs=(settings_json, face_size, 1)
    )
    in_flight: dict[Future[CacheEntry], Job] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                item = queue.popleft()
                in_flight[pool.submit(job, *item)] = item
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                item = in_flight[future]
                try:
                    entry = future.result()
                except BrokenProcessPool:
                    raise
                except Exception as error:  # the job raised: record it, keep going
                    entry = CacheEntry(record=item[0], status="failed", sampling=item[1], message=repr(error))
                del in_flight[future]
                yield entry
    except BrokenProcessPool:
        lost = list(in_flight.values())
        if alone or len(lost) == 1:
            for item in lost:
                yield CacheEntry(record=item[0], status="failed", sampling=item[1], message=CRASHED)
        else:
            log.warning("a face worker died with %d videos in flight: retrying each alone", len(lost))
            suspects.extend(lost)
        if rest is not None:
            rest.extend(queue)  # not started: back to the main queue, after the suspects
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def merge_shards(cache: FaceCache) -> dict[str, int]:
    """Write the cache's `index.json` from every shard manifest (and the entries it already had).

    A key recorded by several manifests (the shard count changed between runs) keeps its usable entry.
    Returns counts per status.
    """
    entries = dict(cache.entries())
    for path in sorted((cache.directory / MANIFESTS).glob("shard-*.jsonl")):
        for key, entry in read_manifest(path).items():
            previous = entries.get(key)
            if previous is None or entry.status != "failed" or previous.status == "failed":
                entries[key] = entry
    cache.write_index(entries)
    counts = {"ok": 0, "no_face": 0, "failed": 0}
    for entry in entries.values():
        counts[entry.status] = counts.get(entry.status, 0) + 1
    return counts
