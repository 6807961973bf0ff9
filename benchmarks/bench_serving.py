"""Serving benchmark: the predictor in-process and over HTTP (KServe V1 and V2), against the issue's goals.

Run from the repo root:

    python -m benchmarks.bench_serving            # full run, ≈ 5 min on 2 cores (training a home included)
    python -m benchmarks.bench_serving --quick    # fewer requests, for development (results marked QUICK)

Writes its section of `BENCHMARKS.md` between `<!-- serving:start -->` and `<!-- serving:end -->` (markers added
at the end of the file when absent) and leaves the rest of the file, which `bench_training` writes, untouched.
Every figure comes from one run, on 127.0.0.1 only:

1. In-process: `TicketClassifier.answer(loaded, TicketBatch(...))` (request log on) for one ticket (p50/p99)
   and for batches of 64 (tickets/s, median of runs), the bare encode of one text beside it, and where the time
   of `answer` goes (exclusive time of each function it calls, timed by wrapping those functions).
2. Over HTTP against the real server (`python -m ticketflow.serving` in a subprocess, request log on): p50/p99
   latency and requests/s at concurrency 1 and 8, single tickets and batches of 64, V1 and V2, with the server's own
   pre/predict/post times from `/metrics`; round trips without the model (`requests` and `http.client`); and a
   paired check that interleaves in-process, V1 and V2 calls on the same texts, so both sides of each goal are
   measured at the same moments.
3. The goals, as ratios against the in-process figures of the same run; where one is missed, where the time goes
   and what would fix it.

Torch runs 2 intra-op threads in both processes (`torch.set_num_threads(2)` here; `OMP_NUM_THREADS=2` and
`MKL_NUM_THREADS=2` for the server). Speed depends on whatever else runs on the machine: a full run first waits
(at most `--max-wait` minutes) until no `bench_training` runs and other processes leave the cores idle, and each
stage records how many cores other processes kept busy meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.common import (
    ROOT,
    Load,
    changed_files,
    enter_repo,
    markdown_table,
    measure,
    other_cores,
    say,
    section_block,
    work_folder,
    write_section,
)

DEFAULT_TEXTS = ROOT / "data" / "sample_tickets.csv"
MODEL = "ticket-classifier"
V1_PATH = f"/v1/models/{MODEL}:predict"
V2_PATH = f"/v2/models/{MODEL}/infer"
HEALTH_PATH = "/v2/health/live"
SECTION_NAME = "serving"  # its section of BENCHMARKS.md: <!-- serving:start --> … <!-- serving:end -->
CODE_FOLDERS = ("serving", "components", "monitoring")
TORCH_THREADS = 2
BATCH = 64
CONCURRENCIES = (1, 8)
PROTOCOLS = ("v1", "v2")
# Goals from the issue.
GOAL_HTTP_EXTRA_MS = 2.0
GOAL_BATCH_RATIO = 0.8
GOAL_SINGLE_MS = 15.0
# Environment that would point the server or the model somewhere else than the benchmark's own home.
FOREIGN_ENV = (
    "TICKETFLOW_HOME",
    "MLFLOW_TRACKING_URI",
    "TICKETFLOW_VECTOR_STORE",
    "TICKETFLOW_EMBEDDING_MODEL",
    "TICKETFLOW_PREDICTION_LOG",
    "TICKETFLOW_API_TOKEN",
    "TICKETFLOW_MODEL_NAME",
    "TICKETFLOW_MODEL_ALIAS",
    "TICKETFLOW_MODEL_DIR",
    "PORT",
    "HOST",
)
KSERVE_STAGES = ("preprocess", "predict", "postprocess")
NAN = float("nan")
IDLE_GAP_S = 0.2  # idle time before each call of the "after an idle gap" row


def other_benchmarks() -> list[str]:
    """Command lines of running `bench_training` processes (not this one or its parents)."""
    mine = {os.getpid(), os.getppid()}
    try:
        found = subprocess.run(["pgrep", "-af", "bench_training"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in found.splitlines() if line.strip() and int(line.split()[0]) not in mine]


def busy_other_cores(seconds: float = 5.0, pids: Callable[[], Sequence[int]] = tuple) -> float | None:
    """Cores other processes (not this one, its children or `pids`) keep busy, sampled over `seconds`."""
    with measure(pids) as load:
        time.sleep(seconds)
    return load.other_cores


def wait_for_training(deadline: float, poll: float = 30.0) -> list[str]:
    """Waits until no `bench_training` runs or `deadline` (perf_counter) passes; returns what still runs."""
    running = other_benchmarks()
    while running and time.perf_counter() < deadline:
        say(f"waiting for bench_training to finish ({len(running)} process(es)); next check in {poll:.0f} s")
        time.sleep(poll)
        running = other_benchmarks()
    return running


def wait_for_quiet(
    deadline: float,
    poll: float = 30.0,
    quiet: float = 0.3,
    sample: float = 5.0,
    pids: Callable[[], Sequence[int]] = tuple,
) -> float | None:
    """Waits until other processes use under `quiet` cores or `deadline` passes; returns the last sample."""
    busy = busy_other_cores(sample, pids)
    while busy is not None and busy >= quiet and time.perf_counter() < deadline:
        say(f"other processes keep {busy:.2f} cores busy; waiting for a quieter machine (next check in {poll:.0f} s)")
        time.sleep(poll)
        busy = busy_other_cores(sample, pids)
    return busy


# --------------------------------------------------------------------------------------------- facts


def code_digests() -> dict[str, str]:
    """sha256 per file of the code the server runs, to notice edits made while the benchmark runs."""
    return common.code_digests(CODE_FOLDERS)


def machine_facts() -> dict[str, object]:
    """The facts table of the section."""
    return common.machine_facts(("torch", "kserve", "uvicorn", "requests", "sentence-transformers", "chromadb"))


# --------------------------------------------------------------------------------------------- data


def load_texts(path: Path) -> list[str]:
    """Distinct ticket texts (subject, body and tags, as the server merges them) from a ticket CSV.

    Malformed rows (more fields than the header) and empty texts are skipped.
    """
    from ticketflow.components.prepare import normalise_whitespace

    texts: dict[str, None] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if None in row:  # more fields than the header: a malformed line
                continue
            tags = (row.get("tags") or "").replace(";", " ").replace(",", " ")
            text = normalise_whitespace(" ".join((row.get("subject") or "", row.get("body") or "", tags)))
            if text:
                texts[text] = None
    return list(texts)


def batch_texts(texts: Sequence[str], index: int, size: int, offset: int = 0) -> list[str]:
    """The `index`-th window of `size` consecutive texts (wrapping around), starting at `offset`."""
    start = offset + index * size
    return [texts[(start + j) % len(texts)] for j in range(size)]


def train_home(home: Path, log_dir: Path) -> float:
    """Trains a model into a fresh home with the real CLI; returns the wall time."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (log_dir / "train.log").open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if proc.returncode != 0:
        tail = (log_dir / "train.log").read_text()[-2000:]
        raise RuntimeError(f"training failed (exit {proc.returncode}): {tail}")
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------- statistics


def pct(values: Sequence[float], q: float) -> float:
    """Percentile by linear interpolation (numpy's default); NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def median_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """Bootstrap confidence interval of the median (percentile method, seeded); NaNs for fewer than 5 values."""
    if len(values) < 5:
        return NAN, NAN
    rng = np.random.default_rng(0)
    data = np.asarray(values)
    medians = np.median(rng.choice(data, size=(resamples, len(data)), replace=True), axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{1000 * seconds:.1f}"


# --------------------------------------------------------------------------------------------- in-process


class StageTimer:
    """Exclusive time per wrapped function: a wrapper's time minus that of the wrapped calls inside it."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []

    def wrap(self, name: str, fn: Callable) -> Callable:
        """Returns `fn` timed under `name`."""

        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                inner = self._stack.pop()
                self.spent[name] += elapsed - inner
                if self._stack:
                    self._stack[-1] += elapsed

        return timed


# Stages of `TicketClassifier.answer`, in call order: (key, label).
STAGES = (
    ("encode", "`encode_texts` (the embedding: ONNX Runtime or PyTorch, see Setup)"),
    ("classify", "`TicketModel.predict` (TF-IDF + MLP fusion, calibration, both targets)"),
    ("review", "`TicketModel.needs_review`"),
    ("store_query", "`VectorStore.query` (Chroma, 5 nearest tickets)"),
    ("similar", "`_similar` without the query (shaping neighbours, reply)"),
    ("mask", "`_mask` (personal-data regexes, text and replies)"),
    ("metrics", "`_count` (Prometheus counters)"),
    ("log_append", "`request_log.append` (queue put; writes in a thread)"),
    ("other", "rest of `answer` (top-3 lists, answer dicts, `PredictionRecord`s)"),
)


@contextlib.contextmanager
def instrumented(clf, loaded) -> Iterator[StageTimer]:
    """Wraps the functions `answer` calls with a `StageTimer` (instance attributes, removed afterwards).

    Args:
        clf: The `TicketClassifier` whose `answer` is measured.
        loaded: Its `LoadedModel`.

    Yields:
        The timer; reset `spent` before each call.
    """
    import ticketflow.serving.predictor as predictor_module

    timer = StageTimer()
    patched = [
        (loaded.model, "predict", "classify"),
        (loaded.model, "needs_review", "review"),
        (clf, "_similar", "similar"),
        (clf, "_mask", "mask"),
        (clf, "_count", "metrics"),
    ]
    if loaded.store is not None:
        patched.append((loaded.store, "query", "store_query"))
    if clf.request_log is not None:
        patched.append((clf.request_log, "append", "log_append"))
    original_encode = predictor_module.encode_texts
    predictor_module.encode_texts = timer.wrap("encode", original_encode)
    for obj, attr, name in patched:
        setattr(obj, attr, timer.wrap(name, getattr(obj, attr)))
    try:
        yield timer
    finally:
        predictor_module.encode_texts = original_encode
        for obj, attr, _ in patched:
            with contextlib.suppress(AttributeError):
                delattr(obj, attr)


@dataclass
class InProcess:
    """In-process figures."""

    single: list[float] = field(default_factory=list)  # seconds per answer() of one ticket
    bare: list[float] = field(default_factory=list)  # seconds per encode of one text
    idle: list[float] = field(default_factory=list)  # seconds per answer() of one ticket after an idle gap
    batch_runs: list[float] = field(default_factory=list)  # seconds per answer() of 64 tickets
    stages_single: list[dict[str, float]] = field(default_factory=list)
    stages_batch: list[dict[str, float]] = field(default_factory=list)
    executor_workers: int = 0
    load_seconds: float = 0.0

    @property
    def p50(self) -> float:
        """Median seconds of `answer` for one ticket."""
        return pct(self.single, 50)

    @property
    def batch_tps(self) -> float:
        """Tickets per second of `answer` on batches of 64 (median of runs)."""
        return statistics.median(BATCH / s for s in self.batch_runs) if self.batch_runs else float("nan")


def bench_in_process(
    clf,
    texts: Sequence[str],
    n_single: int,
    n_batch: int,
    n_profile_single: int,
    n_profile_batch: int,
    n_idle: int = 60,
) -> InProcess:
    """Measures `answer` for one ticket and for 64, the bare encode, and the stage breakdown.

    Args:
        clf: A loaded `TicketClassifier` (with its request log).
        texts: Distinct ticket texts.
        n_single: Single-ticket calls (alternating with as many bare encodes).
        n_batch: Runs of one 64-ticket batch.
        n_profile_single: Instrumented single-ticket calls for the breakdown.
        n_profile_batch: Instrumented 64-ticket calls for the breakdown.
        n_idle: Single-ticket calls each after `IDLE_GAP_S` of idleness (thread pools asleep, caches cold).

    Returns:
        The figures.
    """
    from ticketflow.components.embed import encode_texts
    from ticketflow.serving.predictor import TicketBatch

    loaded = clf.loaded
    encoder, embed_batch = loaded.model.encoder(clf.cfg.serving_embedding_backend), loaded.model.embed_batch_size
    out = InProcess(executor_workers=clf._executor._max_workers)
    for i in range(5):  # warm-up: first calls allocate buffers and fill sklearn/torch caches
        clf.answer(loaded, TicketBatch([texts[i]], f"warm-{i}", "v1"))
        encode_texts(encoder, [texts[i]], embed_batch)
    clf.answer(loaded, TicketBatch(batch_texts(texts, 0, BATCH), "warm-batch", "v1"))
    say(f"  in-process: {n_single} single-ticket answers alternating with {n_single} bare encodes")
    half = len(texts) // 2
    for i in range(n_single):
        text = texts[i % len(texts)]
        t0 = time.perf_counter()
        clf.answer(loaded, TicketBatch([text], f"single-{i}", "v1"))
        out.single.append(time.perf_counter() - t0)
        other = texts[(i + half) % len(texts)]
        t0 = time.perf_counter()
        encode_texts(encoder, [other], embed_batch)
        out.bare.append(time.perf_counter() - t0)
    say(f"  in-process: p50 {ms(out.p50)} ms, p99 {ms(pct(out.single, 99))} ms; bare encode {ms(pct(out.bare, 50))}")
    # Back-to-back calls find the runtimes' thread pools awake; a server with sparse traffic does not.
    say(f"  in-process: {n_idle} single-ticket answers, each after {IDLE_GAP_S * 1000:.0f} ms idle")
    for i in range(n_idle):
        time.sleep(IDLE_GAP_S)
        t0 = time.perf_counter()
        clf.answer(loaded, TicketBatch([texts[(i + 29) % len(texts)]], f"idle-{i}", "v1"))
        out.idle.append(time.perf_counter() - t0)
    say(f"  in-process after idle gaps: p50 {ms(pct(out.idle, 50))} ms, p99 {ms(pct(out.idle, 99))} ms")
    say(f"  in-process: {n_batch} runs of one {BATCH}-ticket batch")
    for k in range(n_batch):
        batch = TicketBatch(batch_texts(texts, k, BATCH, offset=7), f"batch-{k}", "v1")
        t0 = time.perf_counter()
        answers = clf.answer(loaded, batch)
        out.batch_runs.append(time.perf_counter() - t0)
        assert len(answers) == BATCH
    say(f"  in-process: {out.batch_tps:.1f} tickets/s (median)")
    say(f"  in-process: breakdown over {n_profile_single} single and {n_profile_batch} batched instrumented calls")
    with instrumented(clf, loaded) as timer:
        for i in range(n_profile_single):
            out.stages_single.append(_staged_call(clf, loaded, timer, [texts[(i + 11) % len(texts)]], f"prof-{i}"))
        for k in range(n_profile_batch):
            batch = batch_texts(texts, k, BATCH, offset=101)
            out.stages_batch.append(_staged_call(clf, loaded, timer, batch, f"prof-batch-{k}"))
    return out


def _staged_call(clf, loaded, timer: StageTimer, texts: list[str], request_id: str) -> dict[str, float]:
    from ticketflow.serving.predictor import TicketBatch

    timer.spent.clear()
    t0 = time.perf_counter()
    clf.answer(loaded, TicketBatch(texts, request_id, "v1"))
    total = time.perf_counter() - t0
    stages = {key: timer.spent.get(key, 0.0) for key, _ in STAGES if key != "other"}
    stages["other"] = total - sum(stages.values())
    stages["total"] = total
    return stages


# --------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The predictor (`python -m ticketflow.serving`) in a subprocess on a free loopback port.

    Args:
        home: A trained home (`TICKETFLOW_HOME`).
        prediction_log: The server's prediction-log URI (in a temp dir).
        log_path: Where the server's output goes.
    """

    def __init__(self, home: Path, prediction_log: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(
            TICKETFLOW_HOME=str(home),
            TICKETFLOW_PREDICTION_LOG=prediction_log,
            OMP_NUM_THREADS=str(TORCH_THREADS),
            MKL_NUM_THREADS=str(TORCH_THREADS),
        )
        self.command = [
            sys.executable,
            "-m",
            "ticketflow.serving",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--reload-interval",
            "0",
        ]
        self._out = log_path.open("w")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Polls the readiness endpoint until 200 (bounded); returns the seconds it took."""
        import requests

        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self.log_path.read_text()[-3000:]}")

    def pids(self) -> list[int]:
        """The server's pid while it runs (its CPU counts as the benchmark's own)."""
        return [self.proc.pid] if self.proc.poll() is None else []

    def stop(self) -> int | None:
        """SIGTERM (graceful: flushes the prediction log), SIGKILL after 60 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._out.close()
        return self.proc.returncode


_METRIC = re.compile(r'^request_(preprocess|predict|postprocess)_seconds_(sum|count)\{[^}]*model_name="([^"]+)"')


def kserve_times(url: str) -> dict[str, float]:
    """KServe's cumulative pre/predict/postprocess seconds and counts for our model, from `/metrics`."""
    import requests

    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match and match.group(3) == MODEL:
            out[f"{match.group(1)}_{match.group(2)}"] = float(line.rsplit(" ", 1)[1])
    return out


# --------------------------------------------------------------------------------------------- HTTP cells


def v1_body(texts: list[str]) -> bytes:
    return json.dumps({"instances": texts}).encode()


def v2_body(texts: list[str]) -> bytes:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}
    return json.dumps({"inputs": [tensor]}).encode()


def answered(protocol: str, content: bytes) -> int:
    """How many tickets a 200 response answers (-1 when it is not the expected shape)."""
    try:
        body = json.loads(content)
        if protocol == "v1":
            return len(body["predictions"])
        outputs = {o["name"]: o for o in body["outputs"]}
        return len(outputs["label_category"]["data"])
    except (ValueError, KeyError, TypeError):
        return -1


@dataclass
class Cell:
    """One HTTP measurement: protocol × tickets per request × concurrency."""

    protocol: str
    tickets: int
    concurrency: int
    planned: int
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall: float = 0.0
    time_limited: bool = False
    server: dict[str, float] = field(default_factory=dict)  # mean seconds per request of kserve's stages
    load: Load = field(default_factory=Load)

    @property
    def name(self) -> str:
        """A readable name of the cell."""
        kind = "1 ticket" if self.tickets == 1 else f"batch of {self.tickets}"
        return f"{self.protocol.upper()} {kind}, concurrency {self.concurrency}"

    @property
    def ok(self) -> int:
        """Requests answered correctly."""
        return len(self.latencies)

    @property
    def rps(self) -> float:
        """Good requests per second of wall time."""
        return self.ok / self.wall if self.wall > 0 else float("nan")

    @property
    def tps(self) -> float:
        """Tickets answered per second of wall time."""
        return self.rps * self.tickets


def run_requests(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    time_limit: float,
    check: Callable[[int, bytes], bool],
    method: str = "POST",
) -> tuple[list[float], list[int], list[str], float, bool]:
    """Sends the bodies (each once) with `concurrency` client threads, one keep-alive `requests.Session` each.

    Latency is from sending the (pre-serialised) body until the response body is read; the response is checked
    afterwards, outside the timing. No retries; new requests stop at `time_limit` seconds.

    Returns:
        Latencies of good responses, their sizes in bytes, error descriptions, wall seconds from the first send
        to the last response, and whether the time limit cut the run short.
    """
    import requests

    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    limited = threading.Event()
    start = time.perf_counter()
    deadline = start + time_limit
    ends: list[float] = []

    def client() -> None:
        session = requests.Session()
        headers = {"content-type": "application/json"}
        try:
            while True:
                with lock:
                    i = next(counter)
                if i >= len(bodies):
                    return
                if time.perf_counter() > deadline:
                    limited.set()
                    return
                t0 = time.perf_counter()
                try:
                    if method == "GET":
                        response = session.get(url, timeout=60)
                    else:
                        response = session.post(url, data=bodies[i], headers=headers, timeout=60)
                    content = response.content
                    t1 = time.perf_counter()
                except requests.RequestException as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                        ends.append(time.perf_counter())
                    continue
                good = response.status_code == 200 and check(i, content)
                with lock:
                    ends.append(t1)
                    if good:
                        latencies.append(t1 - t0)
                        sizes.append(len(content))
                    else:
                        errors.append(f"HTTP {response.status_code}: {content[:200]!r}")
        finally:
            session.close()

    threads = [threading.Thread(target=client, name=f"client-{n}", daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 120)  # each request times out after 60 s: this bound is never the limit
    wall = (max(ends) if ends else time.perf_counter()) - start
    return latencies, sizes, errors, wall, limited.is_set()


def bench_cell(
    server: Server, texts: Sequence[str], protocol: str, tickets: int, concurrency: int, n: int, limit: float
) -> Cell:
    """Measures one cell; texts are drawn so that requests of a cell are distinct windows of the pool."""
    offset = {"v1": 0, "v2": 53}[protocol] + 17 * concurrency
    make = v1_body if protocol == "v1" else v2_body
    bodies = [make(batch_texts(texts, i, tickets, offset)) for i in range(n)]
    url = server.url + (V1_PATH if protocol == "v1" else V2_PATH)
    cell = Cell(protocol, tickets, concurrency, n)
    before = kserve_times(server.url)
    with measure(server.pids) as load:
        latencies, sizes, errors, wall, limited = run_requests(
            url, bodies, concurrency, limit, lambda _i, content: answered(protocol, content) == tickets
        )
    after = kserve_times(server.url)
    cell.latencies, cell.sizes, cell.wall, cell.time_limited, cell.load = latencies, sizes, wall, limited, load
    cell.errors, cell.error_samples = len(errors), errors[:3]
    calls = after.get("predict_count", 0) - before.get("predict_count", 0)
    for stage in KSERVE_STAGES:
        spent = after.get(f"{stage}_sum", 0) - before.get(f"{stage}_sum", 0)
        cell.server[stage] = spent / calls if calls else float("nan")
    cell.server["calls"] = calls
    say(
        f"  {cell.name}: {cell.ok}/{n} ok, p50 {ms(pct(latencies, 50))} ms, p99 {ms(pct(latencies, 99))} ms, "
        f"{cell.rps:.1f} req/s, {cell.tps:.1f} tickets/s, {cell.errors} errors"
        + (" (time limit)" if limited else "")
        + f"; other processes {other_cores(load)} cores"
    )
    return cell


@dataclass
class Http:
    """HTTP figures."""

    cells: list[Cell] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    floors: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    ready_seconds: float = 0.0
    logged: int | None = None
    answered: int = 0
    exit_code: int | None = None
    shutdown: str = ""
    port: int = 0
    command: str = ""

    def cell(self, protocol: str, tickets: int, concurrency: int) -> Cell | None:
        """The measured cell, or None."""
        for c in self.cells:
            if (c.protocol, c.tickets, c.concurrency) == (protocol, tickets, concurrency):
                return c
        return None


class RawClient:
    """One keep-alive `http.client` connection: the leanest Python client, to show the client's own share."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Sends one request and reads the whole response; a failed connection is dropped (no retry)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise

    def close(self) -> None:
        """Closes the connection."""
        if self.conn is not None:
            self.conn.close()


# Round trips without the model, each with both clients: what any request pays before `answer` runs.
FLOORS = (
    ("GET", HEALTH_PATH, None, 200, f"`GET {HEALTH_PATH}`"),
    (
        "POST",
        V1_PATH,
        b'{"instances": []}',
        400,
        'V1 `POST` rejected in preprocess (`{"instances": []}`: middleware, routing, JSON, preprocess)',
    ),
)


def bench_floors(server: Server, n: int) -> dict[tuple[str, str], list[float]]:
    """p50-ready latencies of the model-free round trips, with `requests` and with `http.client`, interleaved."""
    import requests

    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    raw = RawClient(server.port)
    with requests.Session() as session:
        for _ in range(n):
            for method, path, body, status, label in FLOORS:
                for client in ("requests", "http.client"):
                    t0 = time.perf_counter()
                    try:
                        if client == "requests":
                            kind = {"content-type": "application/json"} if body is not None else {}
                            response = session.request(method, server.url + path, data=body, timeout=60, headers=kind)
                            got = response.status_code
                            _ = response.content
                        else:
                            got, _ = raw.call(method, path, body)
                    except (OSError, requests.RequestException, http.client.HTTPException):
                        continue
                    if got == status:
                        out[(label, client)].append(time.perf_counter() - t0)
    raw.close()
    return out


@dataclass
class Paired:
    """In-process `answer`, V1 and V2 at concurrency 1, interleaved round by round on the same texts.

    `single` and `batch` hold seconds per call by arm ("in-process", "v1", "v2"); `handler_single` and
    `handler_batch` hold, for each good HTTP call, the seconds KServe's handler spent in preprocess, predict and
    postprocess (from `/metrics` read just before and after the call).
    """

    single: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    batch: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    handler_single: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    handler_batch: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    by_round_single: list[dict[str, float]] = field(default_factory=list)  # arm -> seconds, one dict per round
    by_round_batch: list[dict[str, float]] = field(default_factory=list)
    errors: int = 0
    http_tickets: int = 0  # tickets the server answered in this stage (warm-up calls included)

    def differences(self, arm: str, size: int) -> list[float]:
        """Per round, seconds of `arm` minus seconds of in-process `answer` (rounds where both succeeded)."""
        rounds = self.by_round_single if size == 1 else self.by_round_batch
        return [r[arm] - r["in-process"] for r in rounds if arm in r and "in-process" in r]

    def ratios(self, arm: str, size: int) -> list[float]:
        """Per round, in-process seconds over `arm` seconds (a throughput ratio)."""
        rounds = self.by_round_single if size == 1 else self.by_round_batch
        return [r["in-process"] / r[arm] for r in rounds if arm in r and "in-process" in r]

    def rounds(self, size: int) -> int:
        """Rounds measured for a request size."""
        return len((self.single if size == 1 else self.batch).get("in-process", []))


def bench_paired(clf, server: Server, texts: Sequence[str], n_single: int, n_batch: int) -> Paired:
    """Interleaves in-process `answer`, V1 and V2 on the same texts, rotating the order every round.

    Every call has the same surroundings: `/metrics` is read just before and just after it (for the server's
    handler times), whatever the arm. A timed single-ticket call is preceded by an untimed call of the same arm
    on another text, so that each side runs warm, as in back-to-back use: a call right after the *other*
    process worked starts with its threads asleep and caches cold, which would favour whichever arm follows its
    own kind more often in the rotation. (For batches that start-up cost is negligible.)

    Args:
        clf: The loaded in-process `TicketClassifier`.
        server: The running server.
        texts: Distinct ticket texts.
        n_single: Rounds of one ticket.
        n_batch: Rounds of a 64-ticket batch.

    Returns:
        The latencies per arm and the server's handler times per HTTP call.
    """
    import requests

    from ticketflow.serving.predictor import TicketBatch

    out = Paired()
    headers = {"content-type": "application/json"}
    raw = RawClient(server.port)
    session = requests.Session()

    def call(arm: str, batch: list[str], request_id: str) -> float | None:
        """Seconds of one call (None when it failed)."""
        if arm == "in-process":

            def timed_answer() -> float:
                t0 = time.perf_counter()
                clf.answer(clf.loaded, TicketBatch(batch, request_id, "v1"))
                return time.perf_counter() - t0

            return clf.on_model_thread(timed_answer).result(timeout=300)
        protocol = arm.removesuffix("-raw")
        body = (v1_body if protocol == "v1" else v2_body)(batch)
        path = V1_PATH if protocol == "v1" else V2_PATH
        t0 = time.perf_counter()
        try:
            if arm.endswith("-raw"):
                status, content = raw.call("POST", path, body)
            else:
                response = session.post(server.url + path, data=body, headers=headers, timeout=60)
                status, content = response.status_code, response.content
        except (OSError, requests.RequestException, http.client.HTTPException):
            return None
        elapsed = time.perf_counter() - t0
        if status != 200 or answered(protocol, content) != len(batch):
            return None
        out.http_tickets += len(batch)
        return elapsed

    plan = (
        (1, n_single, out.single, out.handler_single, out.by_round_single, ("in-process", "v1", "v2", "v1-raw")),
        (BATCH, n_batch, out.batch, out.handler_batch, out.by_round_batch, ("in-process", "v1", "v2")),
    )
    try:
        for size, rounds, into, handler, by_round, arms in plan:
            for i in range(rounds):
                this_round: dict[str, float] = {}
                by_round.append(this_round)
                batch = batch_texts(texts, i, size, offset=307)
                start = i % len(arms)
                for arm in arms[start:] + arms[:start]:
                    if size == 1 and call(arm, batch_texts(texts, i, 1, offset=97), f"paired-warm-{i}") is None:
                        out.errors += 1
                    before = kserve_times(server.url)
                    elapsed = call(arm, batch, f"paired-{size}-{i}")
                    after = kserve_times(server.url)
                    if elapsed is None:
                        out.errors += 1
                        continue
                    into[arm].append(elapsed)
                    this_round[arm] = elapsed
                    if arm != "in-process" and after.get("predict_count", 0) - before.get("predict_count", 0) == 1:
                        handler[arm].append(
                            {s: after.get(f"{s}_sum", 0) - before.get(f"{s}_sum", 0) for s in KSERVE_STAGES}
                        )
            say(
                f"  paired, {size} ticket(s): "
                + ", ".join(f"{arm} p50 {ms(pct(into[arm], 50))} ms" for arm in arms)
                + f" ({rounds} rounds, {out.errors} errors so far)"
            )
    finally:
        raw.close()
        session.close()
    return out


def bench_http(
    home: Path,
    workdir: Path,
    texts: Sequence[str],
    args: argparse.Namespace,
    stage: Callable,
    results: Results,
    clf,
) -> None:
    """Starts the server, measures every cell, stops it with SIGTERM and counts the logged predictions."""
    import requests

    from ticketflow.monitoring.request_log import PredictionLog

    log_path = workdir / "server-predictions.db"
    for leftover in (log_path, *workdir.glob("server-predictions.db-*")):
        leftover.unlink(missing_ok=True)  # a reused --workdir must not add old records to the count
    log_uri = f"sqlite:///{log_path}"
    http = results.http = Http()
    server = Server(home, log_uri, workdir / "server.log")
    http.port, http.command = server.port, " ".join(["python", *server.command[1:]])
    try:
        http.ready_seconds = server.wait_ready()
        say(f"server ready on {server.url} after {http.ready_seconds:.1f} s (pid {server.proc.pid})")
        with requests.Session() as warm:  # warm-up: both protocols, both sizes
            for i in range(5):
                for protocol, tickets in itertools.product(PROTOCOLS, (1, BATCH)):
                    make = v1_body if protocol == "v1" else v2_body
                    path = V1_PATH if protocol == "v1" else V2_PATH
                    r = warm.post(
                        server.url + path,
                        data=make(batch_texts(texts, i, tickets, 211)),
                        headers={"content-type": "application/json"},
                        timeout=60,
                    )
                    r.raise_for_status()
                    http.answered += tickets

        def floors() -> None:
            http.floors = bench_floors(server, args.n_health)
            http.health = http.floors.get((FLOORS[0][4], "requests"), [])
            for (label, client), latencies in http.floors.items():
                say(f"  {label} with {client}: p50 {ms(pct(latencies, 50))} ms ({len(latencies)} ok)")

        stage("HTTP: round trips without the model", floors, server.pids)
        for tickets, concurrency, protocol in itertools.product((1, BATCH), CONCURRENCIES, PROTOCOLS):
            n = (args.n_http_single if tickets == 1 else args.n_http_batch)[CONCURRENCIES.index(concurrency)]

            def one(protocol=protocol, tickets=tickets, concurrency=concurrency, n=n) -> None:
                cell = bench_cell(server, texts, protocol, tickets, concurrency, n, args.cell_limit)
                http.cells.append(cell)
                http.answered += cell.ok * tickets

            stage(f"HTTP: {protocol} {tickets} ticket(s) × concurrency {concurrency}", one, server.pids)

        def paired() -> None:
            got = results.paired = bench_paired(clf, server, texts, args.n_pair_single, args.n_pair_batch)
            http.answered += got.http_tickets

        if clf.loaded is not None:
            stage("paired check: in-process / V1 / V2 interleaved", paired, server.pids)
    finally:
        http.exit_code = server.stop()
        say(f"server stopped with SIGTERM (exit code {http.exit_code})")
        with contextlib.suppress(OSError):
            server_log = server.log_path.read_text(errors="replace")
            closed = re.search(r"prediction log .*: closed, (\d+) records written", server_log)
            complete = "Application shutdown complete" in server_log
            http.shutdown = (
                f"its log says the prediction log closed with {closed.group(1)} records written"
                if closed
                else "its log has no prediction-log close line"
            ) + ("; application shutdown complete" if complete else "; **no** 'Application shutdown complete'")
    with contextlib.suppress(Exception):
        http.logged = len(PredictionLog(log_uri))


# --------------------------------------------------------------------------------------------- results


@dataclass
class Results:
    """Everything the section shows."""

    quick: bool
    argv: list[str]
    facts: dict[str, object]
    setup: dict[str, object] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    inproc: InProcess | None = None
    http: Http | None = None
    paired: Paired | None = None
    loads: dict[str, Load] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    waited: float = 0.0
    running_at_start: list[str] = field(default_factory=list)
    running_at_end: list[str] = field(default_factory=list)
    busy_at_start: float | None = None
    quiet_before: dict[str, float | None] = field(default_factory=dict)  # other cores sampled before each stage
    finished: str = ""


@dataclass
class Goal:
    """One goal: the standalone comparison (cells against the in-process stage) and the paired one."""

    key: str
    name: str
    standalone: str
    paired: str
    ratio: float
    target: str
    met: bool | None
    basis: str  # which comparison decides: "paired" or "standalone"

    def row(self) -> list[str]:
        """The table row."""
        verdict = "n/a" if self.met is None else _yes(self.met)
        ratio = "n/a" if self.ratio != self.ratio else f"{self.ratio:.2f}"
        return [self.name, self.standalone, self.paired, ratio, self.target, f"{verdict} ({self.basis})"]


def _load_flag(load: Load) -> str:
    """A warning for figures measured while other processes kept ≥ 0.25 cores busy."""
    if load.other_cores is None or load.other_cores < 0.25:
        return ""
    return f" — measured while other processes kept {load.other_cores:.2f} cores busy"


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def goals(results: Results) -> list[Goal]:
    """The issue's goals, decided by the paired comparison where there is one (goals 1 and 2 at concurrency 1).

    Goal 3 is an absolute limit on the in-process figure, decided by the dedicated in-process stage.
    """
    out: list[Goal] = []
    ip, http, paired = results.inproc, results.http, results.paired
    if ip is None:
        return out
    base = ip.p50
    for protocol in PROTOCOLS:
        cell = http.cell(protocol, 1, 1) if http else None
        if cell is None or not cell.ok:
            continue
        p50 = pct(cell.latencies, 50)
        extra = p50 - base
        standalone = f"{ms(p50)} vs {ms(base)} ms ({1000 * extra:+.1f} ms)" + _load_flag(cell.load)
        ratio, met, basis, check = p50 / base, 1000 * extra <= GOAL_HTTP_EXTRA_MS, "standalone", "—"
        diffs = paired.differences(protocol, 1) if paired is not None else []
        if diffs:
            p_http, p_in = pct(paired.single[protocol], 50), pct(paired.single["in-process"], 50)
            gap, (low, high) = statistics.median(diffs), median_ci(diffs)
            check = (
                f"{ms(p_http)} vs {ms(p_in)} ms; per-round difference {1000 * gap:+.1f} ms "
                f"(95 % CI {1000 * low:+.1f} to {1000 * high:+.1f})"
            )
            ratio, met, basis = p_http / p_in, 1000 * gap <= GOAL_HTTP_EXTRA_MS, "paired"
        out.append(
            Goal(
                f"1-{protocol}",
                f"1. {protocol.upper()} p50 over HTTP vs in-process, one ticket, concurrency 1",
                standalone,
                check,
                ratio,
                f"≤ in-process + {GOAL_HTTP_EXTRA_MS:.0f} ms",
                met,
                basis,
            )
        )
    for concurrency, protocol in itertools.product(CONCURRENCIES, PROTOCOLS):
        cell = http.cell(protocol, BATCH, concurrency) if http else None
        if cell is None or not cell.ok:
            continue
        ratio = cell.tps / ip.batch_tps
        standalone = f"{cell.tps:.1f} vs {ip.batch_tps:.1f} tickets/s ({ratio:.2f})" + _load_flag(cell.load)
        met, basis, check = ratio >= GOAL_BATCH_RATIO, "standalone", "—"
        ratios = paired.ratios(protocol, BATCH) if paired is not None and concurrency == 1 else []
        if ratios:
            t_http, t_in = statistics.median(paired.batch[protocol]), statistics.median(paired.batch["in-process"])
            ratio, (low, high) = statistics.median(ratios), median_ci(ratios)
            check = (
                f"{BATCH / t_http:.1f} vs {BATCH / t_in:.1f} tickets/s; per-round ratio {ratio:.2f} "
                f"(95 % CI {low:.2f}–{high:.2f})"
            )
            met, basis = ratio >= GOAL_BATCH_RATIO, "paired"
        extra = "" if concurrency == 1 else " (extra: several clients)"
        out.append(
            Goal(
                f"2-{protocol}-{concurrency}",
                f"2. {protocol.upper()} batches of {BATCH} over HTTP vs in-process, concurrency {concurrency}{extra}",
                standalone,
                check,
                ratio,
                f"≥ {GOAL_BATCH_RATIO} of in-process tickets/s",
                met,
                basis,
            )
        )
    check = "—"
    if paired is not None and paired.single.get("in-process"):
        check = f"{ms(pct(paired.single['in-process'], 50))} ms"
    out.append(
        Goal(
            "3",
            "3. in-process p50, one ticket (embedding included)",
            f"{ms(base)} ms (p99 {ms(pct(ip.single, 99))} ms)",
            check,
            1000 * base / GOAL_SINGLE_MS,
            f"< {GOAL_SINGLE_MS:.0f} ms (ratio = p50 / limit)",
            1000 * base < GOAL_SINGLE_MS,
            "standalone",
        )
    )
    return out


# --------------------------------------------------------------------------------------------- report


def _median_stage(runs: Sequence[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def _breakdown(ip: InProcess) -> list[str]:
    rows = []
    totals = {name: _median_stage(runs, "total") for name, runs in (("1", ip.stages_single), ("b", ip.stages_batch))}
    for key, label in (*STAGES, ("total", "**total `answer`** (median of instrumented calls)")):
        one, many = _median_stage(ip.stages_single, key), _median_stage(ip.stages_batch, key)
        rows.append(
            [
                label,
                f"{1000 * one:.2f}",
                f"{100 * one / totals['1']:.0f} %",
                f"{1000 * many:.1f}",
                f"{100 * many / totals['b']:.0f} %",
            ]
        )
    rows.append(["bare encode of one text (not instrumented, for comparison)", f"{ms(pct(ip.bare, 50))}", "", "", ""])
    return markdown_table(
        ["stage (exclusive time)", "1 ticket, ms", "share", f"{BATCH} tickets, ms", "share"],
        rows,
    )


def _median_handler(calls: Sequence[dict[str, float]], *keys: str) -> float:
    return statistics.median(sum(c[k] for k in keys) for c in calls) if calls else float("nan")


def _http_split(latencies: Sequence[float], handler: Sequence[dict[str, float]], inproc: Sequence[float]) -> dict:
    """Medians of one paired arm: client latency, KServe handler parts, and in-process `answer` beside it."""
    return {
        "client": pct(latencies, 50),
        "inproc": pct(inproc, 50),
        "handler": _median_handler(handler, *KSERVE_STAGES),
        "predict": _median_handler(handler, "predict"),
        "prepost": _median_handler(handler, "preprocess", "postprocess"),
    }


def _fix_notes(results: Results, met: dict[str, bool]) -> list[str]:
    ip, http, paired = results.inproc, results.http, results.paired
    notes: list[str] = []
    labels = dict(STAGES)
    if met.get("3") is False:
        enc1, total1 = _median_stage(ip.stages_single, "encode"), _median_stage(ip.stages_single, "total")
        bare = pct(ip.bare, 50)
        rest = {k: _median_stage(ip.stages_single, k) for k, _ in STAGES if k != "encode"}
        top = sorted(rest.items(), key=lambda kv: -kv[1])[:3]
        text = (
            f"**Goal 3 (< {GOAL_SINGLE_MS:.0f} ms per ticket in-process) is missed**: p50 {ms(ip.p50)} ms. Of an "
            f"instrumented call ({ms(total1)} ms) the embedding takes {ms(enc1)} ms ({100 * enc1 / total1:.0f} %), "
            f"and the bare encode of one text alone is {ms(bare)} ms; next come "
            + ", ".join(f"{labels[k]} {1000 * v:.1f} ms" for k, v in top)
            + ". "
        )
        if bare * 1000 >= GOAL_SINGLE_MS:
            text += (
                f"The encoder alone is over the limit at {TORCH_THREADS} threads on this CPU, so no change to the "
                "rest of the request path meets the goal. Check the Setup row `embedding`: with backend `torch`, "
                "or when the `onnx` backend fell back to PyTorch (encoder class `SentenceTransformer`; the server "
                "log says why), one text costs about twice ONNX Runtime's time. Otherwise a smaller encoder, or "
                "int8 quantisation of this one, would be next; both move the vectors, so the classifier and the "
                "similarity collection must be retrained and the quality re-checked against `bench_training`."
            )
        else:
            text += (
                f"The encoder fits ({ms(bare)} ms), leaving {GOAL_SINGLE_MS - 1000 * bare:.1f} ms for the rest, "
                f"which takes {ms(total1 - enc1)} ms: the fix is in the stages named above, largest first."
            )
        notes += [text, ""]
    if http is None:
        return notes
    for protocol in PROTOCOLS:
        if met.get(f"1-{protocol}") is not False:
            continue
        if paired is not None and paired.single.get(protocol):
            split = _http_split(paired.single[protocol], paired.handler_single[protocol], paired.single["in-process"])
            source = f"medians of {len(paired.single[protocol])} paired rounds"
        else:
            cell = http.cell(protocol, 1, 1)
            split = {
                "client": pct(cell.latencies, 50),
                "inproc": ip.p50,
                "handler": sum(cell.server.get(k, 0.0) for k in KSERVE_STAGES),
                "predict": cell.server.get("predict", float("nan")),
                "prepost": cell.server.get("preprocess", 0.0) + cell.server.get("postprocess", 0.0),
            }
            source = "means of the concurrency-1 cell, p50 of the in-process stage"
        outside = split["client"] - split["handler"]
        beyond = split["predict"] - split["inproc"]
        floor = {k: pct(v, 50) for k, v in http.floors.items()}
        get_label, post_label = FLOORS[0][4], FLOORS[1][4]
        get_req, get_raw = floor.get((get_label, "requests"), NAN), floor.get((get_label, "http.client"), NAN)
        post_raw = floor.get((post_label, "http.client"), NAN)
        parts = {
            "`requests` client overhead (its GET minus `http.client`'s)": get_req - get_raw,
            "bare loopback round trip (`http.client` GET)": get_raw,
            "server path without the model (rejected V1 POST minus GET, `http.client`)": post_raw - get_raw,
            "rest outside the handler (success response, waking the event loop after predict)": outside
            - (get_req - get_raw)
            - get_raw
            - (post_raw - get_raw),
            "predict step beyond `answer` (hop to the predict thread pool, running beside the event loop)": beyond,
            "KServe pre + postprocess": split["prepost"],
        }
        listed = "; ".join(f"{k} {1000 * v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        diffs = paired.differences(protocol, 1) if paired is not None else []
        gap = statistics.median(diffs) if diffs else split["client"] - split["inproc"]
        text = (
            f"**Goal 1 ({protocol.upper()}) is missed**: HTTP is {1000 * gap:+.1f} ms over in-process "
            f"(HTTP p50 {ms(split['client'])} ms, in-process {ms(split['inproc'])} ms; {source}). KServe's handler "
            f"accounts for {ms(split['handler'])} ms of the client's {ms(split['client'])} ms. Estimated parts of "
            f"the gap, ms, largest first: {listed} (differences of medians, from the round trips without the "
            "model and the paired calls; they need not add up exactly). "
        )
        raw_arm = f"{protocol}-raw"
        raw_diffs = paired.differences(raw_arm, 1) if paired is not None else []
        if raw_diffs:
            raw_gap = statistics.median(raw_diffs)
            predict_raw = _median_handler(paired.handler_single.get(raw_arm, []), "predict")
            text += (
                f"With a lean client (one `http.client` keep-alive connection) in the same rounds the gap is "
                f"{1000 * raw_gap:+.1f} ms"
                + (" — within the goal" if 1000 * raw_gap <= GOAL_HTTP_EXTRA_MS else "")
                + f"; the server's own predict step was {ms(split['predict'] - predict_raw)} ms longer with "
                "`requests` than with `http.client` (the client's CPU competes with the server's torch threads on "
                "the same 2 cores), on top of the client's own per-call overhead. "
            )
        client_side = (get_req - get_raw) + get_raw
        text += (
            f"The client library and the loopback round trip alone take {1000 * client_side:.1f} ms of the "
            f"{GOAL_HTTP_EXTRA_MS:.0f} ms allowance. What the server controls is the rest: "
            f"{1000 * (post_raw - get_raw):.1f} ms of per-request work before the model (uvicorn, FastAPI routing, "
            "the guard middleware, which buffers and replays only bodies sent without a `content-length`, and "
            "KServe's JSON decoding and validation), "
            f"{1000 * parts[next(k for k in parts if k.startswith('rest outside'))]:.1f} ms around it (encoding "
            "the answer, waking the event loop when the predict thread finishes) and "
            f"{1000 * beyond:.1f} ms for the hop to the predict thread. What would fix it: a leaner request path "
            "(answer with orjson), and for clients a lighter HTTP client than `requests`."
        )
        notes += [text, ""]
    for concurrency, protocol in itertools.product(CONCURRENCIES, PROTOCOLS):
        if met.get(f"2-{protocol}-{concurrency}") is not False:
            continue
        cell = http.cell(protocol, BATCH, concurrency)
        if concurrency == 1 and paired is not None and paired.batch.get(protocol):
            split = _http_split(paired.batch[protocol], paired.handler_batch[protocol], paired.batch["in-process"])
            notes += [
                f"**Goal 2 ({protocol.upper()}, concurrency 1) is missed**: per batch of {BATCH} (medians of "
                f"{len(paired.batch[protocol])} paired rounds) the client waits {ms(split['client'])} ms against "
                f"{ms(split['inproc'])} ms for `answer` in-process: KServe's predict {ms(split['predict'])} ms, "
                f"pre + postprocess {ms(split['prepost'])} ms, outside the handler "
                f"{ms(split['client'] - split['handler'])} ms for a {statistics.fmean(cell.sizes) / 1024:.0f} KiB "
                "response. What would fix it: the largest of these parts — a predict step slower than `answer` "
                "points at the thread pool (see goal 1); time outside the handler at (de)serialising the 64 "
                "answers (a faster JSON encoder; for V2, `details` repeats every answer as a JSON string).",
                "",
            ]
            continue
        c1 = http.cell(protocol, BATCH, 1)
        scaling = f"{cell.tps / c1.tps:.2f}× the concurrency-1 throughput" if c1 and c1.tps else "n/a"
        text = (
            f"**Goal 2 ({protocol.upper()}, concurrency {concurrency}) is missed**: {cell.tps:.1f} tickets/s, "
            f"{cell.tps / ip.batch_tps:.2f} of the in-process stage, {scaling} (other processes kept "
            f"{other_cores(cell.load)} cores busy during this cell against "
            f"{other_cores(results.loads['in-process'])} during the in-process stage). KServe's predict time per "
            f"request ({ms(cell.server.get('predict', float('nan')))} ms) includes waiting for one of the "
            f"{ip.executor_workers} predict threads, so it measures queueing, not the model. "
        )

        def busy(load: Load | None) -> bool:
            return load is not None and load.other_cores is not None and load.other_cores >= 0.25

        if busy(cell.load) and not busy(results.loads.get("in-process")):
            text += (
                "Other processes' load during this cell alone can explain the shortfall (the in-process baseline "
                "ran on a quiet machine); compare the other protocol's row at this concurrency, and re-run on a "
                "quiet machine before acting on this row."
            )
        elif c1 and c1.tps and cell.tps < 0.9 * c1.tps and not busy(c1.load):
            text += (
                f"Throughput falls with more clients: {ip.executor_workers} concurrent `answer` calls with "
                f"{TORCH_THREADS} torch threads each oversubscribe {os.cpu_count()} cores. What would fix it: "
                "one torch thread per predict thread (`torch.set_num_threads(max(1, cores // workers))` in the "
                "server), or one predict thread for batches, so concurrent batches queue instead of competing."
            )
        else:
            text += (
                "More clients do not lower throughput, so the shortfall is the same per-batch cost as at "
                "concurrency 1; see the paired figures and goal 2 at concurrency 1."
            )
        notes += [text, ""]
    return notes


def render(results: Results) -> str:
    q = results.quick
    out = [
        "## Serving benchmark" + (" — QUICK MODE (development, not representative)" if q else ""),
        "",
        f"Written by `python -m benchmarks.bench_serving{' --quick' if q else ''}` on {results.facts['date']}; "
        f"finished {results.finished}. All figures below were measured in this one run, on 127.0.0.1 only; "
        "the rest of this file is written by `bench_training` and is not part of this run.",
        "",
    ]
    if q:
        out += ["> **QUICK MODE**: few requests per cell. Do not quote these figures.", ""]
    if results.failures:
        out += ["**Failures in this run** (the parts concerned are incomplete):", ""]
        out += [f"- {f}" for f in results.failures] + [""]
    if results.warnings:
        out += ["Notes on this run:", ""]
        out += [f"- {w}" for w in results.warnings] + [""]
    if results.running_at_start:
        idle = (
            f"**`bench_training` was still running** when the measurements started "
            f"({len(results.running_at_start)} process(es)), after waiting {results.waited / 60:.1f} min"
        )
    else:
        idle = "no `bench_training` was running when the measurements started" + (
            f" (the benchmark waited {results.waited / 60:.1f} min for it and for other processes to quiet down)"
            if results.waited > 1
            else ""
        )
    if results.busy_at_start is not None:
        idle += f"; other processes used {results.busy_at_start:.2f} cores in a 5 s sample just before"
    measured = {k: x for k, x in results.loads.items() if x.other_cores is not None and not k.startswith("train")}
    worst = max(measured.items(), key=lambda kv: kv[1].other_cores, default=None)
    if worst is None:
        verdict = "other processes' load was not measured (no /proc/stat)."
    elif worst[1].other_cores < 0.25:
        verdict = (
            f"the machine was otherwise idle: other processes kept at most {worst[1].other_cores:.2f} cores busy "
            "during any measuring stage."
        )
    else:
        busy_stages = [k for k, x in measured.items() if x.other_cores >= 0.25]
        verdict = (
            f"**the machine was not otherwise idle**: other processes kept ≥ 0.25 cores busy during "
            f"{len(busy_stages)} of {len(measured)} measuring stages, up to {worst[1].other_cores:.2f} cores (stage "
            f"*{worst[0]}*); that slows the figures of those stages — see *other cores* in the tables and the load "
            "table at the end, and prefer the paired figures, which are load-matched."
        )
    load_avg = results.facts.get(
        "load average when measuring started (1/5/15 min)", results.facts["load average at start (1/5/15 min)"]
    )
    out += [
        f"Machine: {results.facts['cpu']}, {results.facts['cores (os.cpu_count)']} cores; load average when the "
        f"measurements started {load_avg}; {idle}; {verdict}",
        "",
    ]
    rows = goals(results)
    met = {g.key: bool(g.met) for g in rows}
    out += ["### Goals", ""]
    out += markdown_table(
        ["goal", "standalone: HTTP cell vs in-process stage", "paired: same moments", "ratio", "target", "met?"],
        [g.row() for g in rows],
    )
    rounds = (results.paired.rounds(1), results.paired.rounds(BATCH)) if results.paired is not None else (0, 0)
    out += [
        "",
        "*Standalone* compares the HTTP cells below with the in-process stage, which ran before the server "
        "started. *Paired* measures the same comparison again with the calls interleaved at concurrency 1 "
        f"({rounds[0]} rounds of one ticket, {rounds[1]} rounds of {BATCH}; in-process `answer`, V1 and V2 in "
        "rotating order on the same text or batch, each single-ticket call right after an untimed call of its "
        "own kind so that both sides run warm as in back-to-back use; `/metrics` read around every call; the "
        "server idle during in-process calls), so a change in "
        "the machine's load between stages cannot decide a verdict: goals 1 and 2 (concurrency 1) are decided "
        "by the paired figures — the median over rounds of HTTP minus in-process (goal 1) or of in-process time "
        "over HTTP time (goal 2), with a bootstrap 95 % confidence interval of that median — and goal 3 (an "
        "absolute limit) by the in-process stage. *ratio*: HTTP p50 / in-process p50 (goal 1), HTTP tickets/s / "
        "in-process tickets/s (goal 2), p50 / 15 ms (goal 3). "
        "Concurrency 8 (extra rows) shows what several clients get from the same 2 cores, against one "
        "in-process caller.",
        "",
    ]
    ip = results.inproc
    out += ["### Setup", ""]
    out += [*markdown_table(["item", "value"], [[k, v] for k, v in results.setup.items()]), ""]
    if ip is not None:
        out += ["### In-process (`TicketClassifier.answer`, request log on)", ""]
        out += markdown_table(
            ["figure", "calls", "p50", "p99", "throughput"],
            [
                ["`answer`, one ticket", len(ip.single), f"{ms(ip.p50)} ms", f"{ms(pct(ip.single, 99))} ms", ""],
                [
                    f"`answer`, one ticket after {IDLE_GAP_S * 1000:.0f} ms idle (sparse traffic: thread pools "
                    "asleep, caches cold)",
                    len(ip.idle),
                    f"{ms(pct(ip.idle, 50))} ms",
                    f"{ms(pct(ip.idle, 99))} ms",
                    "",
                ],
                [
                    "bare `encode_texts` of one text (the embedding alone)",
                    len(ip.bare),
                    f"{ms(pct(ip.bare, 50))} ms",
                    f"{ms(pct(ip.bare, 99))} ms",
                    "",
                ],
                [
                    f"`answer`, batch of {BATCH}",
                    len(ip.batch_runs),
                    f"{ms(statistics.median(ip.batch_runs))} ms",
                    f"max {ms(max(ip.batch_runs))} ms",
                    f"{ip.batch_tps:.1f} tickets/s (median of runs)",
                ],
            ],
        )
        out += [
            "",
            f"Where the time of `answer` goes ({len(ip.stages_single)} single-ticket and {len(ip.stages_batch)} "
            f"{BATCH}-ticket calls with each function `answer` calls wrapped by a timer; exclusive times, medians; "
            "the wrapped calls are the same ones `answer` makes):",
            "",
            *_breakdown(ip),
            "",
        ]
    http = results.http
    if http is not None and http.cells:
        out += ["### Over HTTP (real server subprocess)", ""]
        rows = []
        for c in http.cells:
            rows.append(
                [
                    c.protocol.upper(),
                    c.tickets,
                    c.concurrency,
                    f"{c.ok}/{c.planned}" + (" (time limit)" if c.time_limited else ""),
                    c.errors,
                    ms(pct(c.latencies, 50)),
                    ms(pct(c.latencies, 99)),
                    f"{c.rps:.1f}",
                    f"{c.tps:.1f}",
                    ms(sum(c.server.get(s, 0.0) for s in KSERVE_STAGES)),
                    f"{statistics.fmean(c.sizes) / 1024:.1f}" if c.sizes else "n/a",
                    other_cores(c.load),
                ]
            )
        out += markdown_table(
            [
                "protocol",
                "tickets/request",
                "concurrency",
                "ok/sent",
                "errors",
                "p50 ms",
                "p99 ms",
                "requests/s",
                "tickets/s",
                "mean ms in KServe handler",
                "response KiB",
                "other cores",
            ],
            rows,
        )
        out += [
            "",
            "*Mean ms in KServe handler* is preprocess + predict + postprocess from the server's own "
            "`request_*_seconds` histograms (sums and counts read from `/metrics` before and after each cell); "
            "at concurrency 8 it includes waiting for a predict thread.",
            "",
        ]
        if http.floors:
            floor_rows = []
            for _, _, _, _, label in FLOORS:
                cells = [label]
                for client in ("requests", "http.client"):
                    lat = http.floors.get((label, client), [])
                    cells.append(f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))} ({len(lat)})")
                floor_rows.append(cells)
            out += [
                "Round trips without the model (concurrency 1, interleaved), p50 / p99 ms (requests):",
                "",
                *markdown_table(["request", "`requests.Session`", "`http.client` keep-alive connection"], floor_rows),
                "",
            ]
        paired = results.paired
        if paired is not None and paired.rounds(1):
            rows = []
            names = {"in-process": "in-process `answer`", "v1": "V1", "v2": "V2", "v1-raw": "V1, `http.client`"}
            for arm in ("in-process", *PROTOCOLS, "v1-raw"):
                row = [names[arm]]
                for size in (1, BATCH):
                    lat = (paired.single if size == 1 else paired.batch).get(arm, [])
                    handler = (paired.handler_single if size == 1 else paired.handler_batch).get(arm, [])
                    if not lat:
                        row += ["", "", ""]
                        continue
                    row += [
                        f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))}",
                        "" if arm == "in-process" else ms(_median_handler(handler, "predict")),
                        "" if arm == "in-process" else ms(pct(lat, 50) - _median_handler(handler, *KSERVE_STAGES)),
                    ]
                rows.append(row)
            out += [
                f"Paired check ({paired.rounds(1)} + {paired.rounds(BATCH)} rounds, concurrency 1, "
                f"{paired.errors} errors): p50 / p99 ms per call; KServe's predict step and the time outside "
                "KServe's handler (client p50 minus the handler's median), in ms:",
                "",
                *markdown_table(
                    [
                        "arm",
                        "1 ticket p50 / p99",
                        "predict step",
                        "outside handler",
                        f"{BATCH} tickets p50 / p99",
                        "predict step",
                        "outside handler",
                    ],
                    rows,
                ),
                "",
            ]
        errors = [f"{c.name}: {s}" for c in http.cells for s in c.error_samples]
        if errors:
            out += ["Sample errors:", "", *[f"- `{e}`" for e in errors[:6]], ""]
        logged = "unknown" if http.logged is None else str(http.logged)
        out += [
            f"Request log: the server logged {logged} predictions for {http.answered} tickets answered with status "
            f"200 (warm-up included). The server was stopped with SIGTERM: exit code {http.exit_code} "
            f"(uvicorn re-raises the signal after its graceful shutdown, hence -{int(signal.SIGTERM)}); "
            f"{http.shutdown}.",
            "",
        ]
    if ip is not None and any(v is False for v in met.values()):
        out += ["### Missed goals: where the time goes and what would fix it", ""]
        out += ["(`serving/` was not changed by this benchmark.)", ""]
        out += _fix_notes(results, met)
    out += ["### Machine load and versions", ""]

    def before(name: str) -> str:
        busy = results.quiet_before.get(name, NAN)
        return "—" if busy is None or busy != busy else f"{busy:.2f}"

    out += [
        "Each measuring stage first waits (up to the per-stage limit, within the overall wait) until other "
        "processes use under 0.3 cores in a 3 s sample; *other cores before* is the last such sample, *other "
        "cores* the average over the stage (the machine's busy CPU time minus this benchmark's and its server's).",
        "",
    ]
    out += markdown_table(
        ["stage", "wall", "own cores (benchmark + server)", "other cores before", "other cores"],
        [
            [name, f"{x.seconds:.1f} s", f"{x.own_cores:.2f}", before(name), other_cores(x)]
            for name, x in results.loads.items()
        ],
    )
    out += ["", *markdown_table(["fact", "value"], [[k, v] for k, v in results.facts.items()]), ""]
    out += [f"Command: `{' '.join(results.argv)}` from `{ROOT}`.", ""]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serving", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (results marked QUICK)")
    parser.add_argument("--home", type=Path, help="an already trained home (default: train a fresh one)")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="ticket CSV the request texts come from")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="report whose section to write")
    parser.add_argument("--workdir", type=Path, help="keep homes, logs and prediction logs here (default: temp)")
    parser.add_argument(
        "--max-wait", type=float, help="minutes to wait for bench_training to finish (default 40, quick 0)"
    )
    parser.add_argument(
        "--stage-wait",
        type=float,
        help="seconds each measuring stage may wait for other processes' load to pass (default 180, quick 0); "
        "all waits together stay within --max-wait",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_single, args.n_batch, args.n_prof_single, args.n_prof_batch, args.n_idle = 30, 3, 10, 2, 10
        args.n_http_single, args.n_http_batch, args.n_health, args.cell_limit = (40, 80), (6, 16), 50, 30.0
        args.n_pair_single, args.n_pair_batch = 20, 3
        args.stage_wait = 0.0 if args.stage_wait is None else args.stage_wait
        args.max_wait = 0.0 if args.max_wait is None else args.max_wait
    else:
        args.n_single, args.n_batch, args.n_prof_single, args.n_prof_batch, args.n_idle = 200, 7, 50, 3, 60
        args.n_http_single, args.n_http_batch, args.n_health, args.cell_limit = (200, 400), (30, 48), 200, 120.0
        args.n_pair_single, args.n_pair_batch = 100, 10
        args.stage_wait = 180.0 if args.stage_wait is None else args.stage_wait
        args.max_wait = 40.0 if args.max_wait is None else args.max_wait
    return args


def _import_quietly() -> None:
    # Importing kserve parses sys.argv (abbreviations of its own options included): hide ours.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve  # noqa: F401
    finally:
        sys.argv = argv


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    enter_repo(FOREIGN_ENV)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(TORCH_THREADS)
    import torch

    torch.set_num_threads(TORCH_THREADS)
    _import_quietly()
    workdir, keep = work_folder(args.workdir, "ticketflow-bench-serving-")
    argv_shown = ["python", "-m", "benchmarks.bench_serving", *(argv if argv is not None else sys.argv[1:])]
    say(f"ticketflow serving benchmark ({'QUICK' if args.quick else 'FULL'}); work folder {workdir}")

    started = time.perf_counter()
    deadline = started + args.max_wait * 60
    if wait_for_training(deadline):
        say("bench_training still running after the wait; measuring anyway (stated in the report)")
    results = Results(quick=args.quick, argv=argv_shown, facts=machine_facts())
    digests = code_digests()
    texts = results.texts = load_texts(args.texts)
    if len(texts) < BATCH:
        print(f"error: only {len(texts)} distinct texts in {args.texts}; need at least {BATCH}", file=sys.stderr)
        return 2

    def stage(name: str, fn: Callable[[], None], pids: Callable[[], Sequence[int]] = tuple, quiet: bool = True) -> bool:
        if quiet and args.stage_wait > 0:  # a measuring stage: give other processes' load a chance to pass
            limit = min(deadline, time.perf_counter() + args.stage_wait)
            results.quiet_before[name] = wait_for_quiet(limit, poll=10.0, sample=3.0, pids=pids)
        say(f"stage: {name}")
        try:
            with measure(pids) as load:
                fn()
        except Exception as exc:
            traceback.print_exc()
            results.failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:500]}")
            say(f"stage FAILED: {name}: {exc}")
            return False
        finally:
            results.loads[name] = load
        say(f"stage done: {name} ({load.seconds:.1f} s; other processes {other_cores(load)} cores busy)")
        return True

    home = args.home.resolve() if args.home else workdir / "home"
    trained = {"seconds": None}

    def train() -> None:
        shutil.rmtree(home, ignore_errors=True)
        trained["seconds"] = train_home(home, workdir / "logs")

    if args.home is None and not stage(
        "train a home (python -m ticketflow.pipelines.cli --home <tmp> run)", train, quiet=False
    ):
        _finish(results, args, workdir, keep, digests)
        return 1
    # Measurements start on a quiet machine if it gets quiet within the wait (training above used it too).
    results.busy_at_start = wait_for_quiet(deadline)
    results.running_at_start = other_benchmarks()
    results.waited = time.perf_counter() - started - (trained["seconds"] or 0.0)
    results.facts["load average when measuring started (1/5/15 min)"] = common.load_average()

    from ticketflow.components.config import TicketflowConfig
    from ticketflow.monitoring.request_log import PredictionLog
    from ticketflow.serving.predictor import TicketClassifier

    for leftover in workdir.glob("inprocess-predictions.db*"):
        leftover.unlink()
    inproc_log = PredictionLog(f"sqlite:///{workdir / 'inprocess-predictions.db'}")
    clf = TicketClassifier(MODEL, TicketflowConfig(home=str(home)), request_log=inproc_log)

    # Like the server: the model loads on the main thread; warm-up and `answer` run on the model's own thread.

    def inproc() -> None:
        t0 = time.perf_counter()
        clf.load()
        load_seconds = time.perf_counter() - t0
        results.inproc = clf.on_model_thread(
            lambda: bench_in_process(
                clf, texts, args.n_single, args.n_batch, args.n_prof_single, args.n_prof_batch, args.n_idle
            )
        ).result(timeout=3600)
        results.inproc.load_seconds = load_seconds

    stage("in-process", inproc)
    mean_chars = statistics.fmean(len(t) for t in texts)
    encoder_class = type(clf.loaded.model.encoder(clf.cfg.serving_embedding_backend)).__name__ if clf.loaded else "?"
    results.setup = {
        "model": f"`{MODEL}` version {clf.loaded.version if clf.loaded else '?'}, trained by "
        + (
            f"`python -m ticketflow.pipelines.cli --home <tmp> run` on `data/sample_tickets.csv` in this run "
            f"({trained['seconds']:.0f} s)"
            if trained["seconds"] is not None
            else f"an existing home `{home}`"
        ),
        "request texts": f"{len(texts)} distinct tickets from `{args.texts.relative_to(ROOT)}` (subject + body + "
        f"tags, malformed rows skipped; mean {mean_chars:.0f} characters); each request of a cell gets its own "
        "text or window of 64 consecutive texts (wrapping around the pool), sent as plain strings",
        "in-process": f"this process; `torch.set_num_threads({TORCH_THREADS})`; "
        f"`TicketClassifier(name, cfg, request_log=...).load()` on the main thread, then `answer(loaded, "
        "TicketBatch(texts, id, 'v1'))` on the classifier's model thread (`on_model_thread`), the thread the "
        "server's predict uses too (it loads on its main thread and runs the warm-up encode and every request on "
        "that one thread: torch's OpenMP runtime keeps a team of spinning workers per calling thread, and two "
        "calling threads made one encode 15–17 ms instead of 9 ms), so both sides have the same layout; "
        f"request log: SQLite in the temp work folder; 5 warm-up calls first; {args.n_single} single calls "
        f"alternating with {args.n_single} bare encodes, {args.n_batch} runs of 64",
        "embedding": f"`{clf.cfg.embedding_model}`, served with backend `{clf.cfg.serving_embedding_backend}` "
        f"(`TicketflowConfig.serving_embedding_backend`; encoder class `{encoder_class}`): with `onnx`, calls of "
        "fewer than 8 texts run on ONNX Runtime (the transformer exported in memory at load, vectors checked "
        "against PyTorch's) and larger ones on PyTorch, which is faster there; the server uses the same",
        "server": "`python -m ticketflow.serving --host 127.0.0.1 --port <free> --reload-interval 0` (one uvicorn "
        f"process; predict runs on {results.inproc.executor_workers if results.inproc else '?'} model "
        "thread(s)); `OMP_NUM_THREADS="
        f"{TORCH_THREADS}`, `MKL_NUM_THREADS={TORCH_THREADS}` (torch intra-op threads {TORCH_THREADS}); request "
        "log on (SQLite in the temp work folder, `TICKETFLOW_PREDICTION_LOG`); champion watcher off; warm-up of 5 "
        "requests per protocol and size; stopped with SIGTERM",
        "clients": "this process: 1 client thread (concurrency 1) or 8 client threads (concurrency 8), one "
        "keep-alive `requests.Session` each; bodies serialised beforehand; latency = send until the response body "
        "is read; responses checked (status 200, one answer per ticket) after timing; no retries",
        "requests per cell": f"single ticket {args.n_http_single[0]} (concurrency 1) / {args.n_http_single[1]} "
        f"(concurrency 8); batches of 64: {args.n_http_batch[0]} / {args.n_http_batch[1]}; at most "
        f"{args.cell_limit:.0f} s per cell",
        "percentiles": "linear interpolation (numpy); with 30–48 batched requests p99 is close to the maximum",
    }

    def http() -> None:
        bench_http(home, workdir, texts, args, stage, results, clf)

    stage("HTTP (server start, cells, stop)", http, quiet=False)
    clf.stop()
    with contextlib.suppress(Exception):
        inproc_log.close()
    changed = changed_files(digests, code_digests())
    if changed:
        results.warnings.append(
            f"files changed in the work tree while the benchmark ran (by someone else): {', '.join(changed)}; the "
            "server imported the code when it started, the in-process model at the start of the run"
        )
    return _finish(results, args, workdir, keep, digests)


def _finish(results: Results, args: argparse.Namespace, workdir: Path, keep: bool, digests: dict) -> int:
    results.finished = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results.running_at_end = other_benchmarks()
    if results.running_at_end:
        say("note: bench_training is running; it keeps this section when it rewrites BENCHMARKS.md")
    section = render(results)
    if write_section(args.out, SECTION_NAME, section):
        say(f"wrote the serving section of {args.out}")
    else:
        spare = workdir / "serving-section.md"
        spare.write_text(section_block(SECTION_NAME, section) + "\n", encoding="utf-8")
        keep = True
        say(f"error: {args.out} has the serving markers more than once or out of order; section left in {spare}")
        results.failures.append("markers")
    for g in goals(results):
        verdict = "met" if g.met else "NOT met"
        say(f"goal {g.name}: standalone {g.standalone}; paired {g.paired} → {verdict} ({g.basis})")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
