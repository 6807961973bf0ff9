"""Serving benchmark: the predictor in-process and over HTTP (KServe V1 and V2) on 127.0.0.1, against its goals.

    python -m benchmarks.bench_serving            # ≈ 5 min on 2 cores, training a home on the sample included
    python -m benchmarks.bench_serving --quick    # a few requests per figure; writes to a temp folder

1. In-process: `TicketClassifier.answer` (request log on) for one ticket, interleaved with the model's encode of one
   text; one ticket after an idle pause; batches of 64. Goal 3: one ticket under 15 ms.
2. Over HTTP (`python -m ticketflow.serving` in a subprocess, request log on): latency and throughput for V1 and V2,
   one ticket and batches of 64, at concurrency 1 and 8.
3. Paired: in-process `answer`, V1 and V2 interleaved round by round on the same texts, so both sides of goals 1
   (HTTP adds at most 2 ms to one ticket) and 2 (batched HTTP keeps 0.8 of in-process tickets/s) are measured at
   the same moments of the machine's load.

Torch runs 2 intra-op threads in both processes (`torch.set_num_threads(2)` here, `OMP_NUM_THREADS=2` there). Like
the server, this process loads the model on its main thread and calls `answer` on the classifier's model thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import (
    ROOT,
    figure,
    interleaved,
    measure,
    median,
    merged_rows,
    output_arguments,
    output_paths,
    p99,
    run_facts,
    save,
    say,
    shown,
)

SAMPLE = ROOT / "data" / "sample_tickets.csv"
MODEL = "ticket-classifier"
PATHS = {"v1": f"/v1/models/{MODEL}:predict", "v2": f"/v2/models/{MODEL}/infer"}
TORCH_THREADS = 2
BATCH = 64
IDLE_PAUSE = 0.2  # seconds of idleness before each call of the "after an idle pause" figure
GOAL_HTTP_EXTRA_MS = 2.0
GOAL_BATCH_RATIO = 0.8
GOAL_SINGLE_MS = 15.0
# Environment that would point the server or the model elsewhere than the benchmark's own home.
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
# Calls, requests or rounds per figure: (full run, quick run).
COUNTS = {
    "single": (200, 10),  # in-process single tickets, interleaved with as many encodes by the model's encoder
    "idle": (60, 3),
    "batch": (7, 1),
    "warm_up": (5, 1),  # HTTP requests per protocol and size before the cells
    "http_1_1": (200, 5),  # HTTP cells: http_<tickets>_<concurrency>
    "http_1_8": (400, 8),
    "http_64_1": (30, 1),
    "http_64_8": (48, 2),
    "paired_single": (100, 5),
    "paired_batch": (10, 1),
}


def load_texts(path: Path) -> list[str]:
    """Distinct ticket texts (subject, body and tags, as the server merges them); malformed rows skipped."""
    return list(dict.fromkeys(text for text, _ in merged_rows(path)))


def window(texts: list[str], index: int, size: int, offset: int = 0) -> list[str]:
    """The `index`-th window of `size` consecutive texts (wrapping around), from `offset`."""
    return [texts[(offset + index * size + j) % len(texts)] for j in range(size)]


def body(protocol: str, texts: list[str]) -> bytes:
    """A V1 or V2 request body of plain ticket texts."""
    if protocol == "v1":
        return json.dumps({"instances": texts}).encode()
    return json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    ).encode()


def answered(protocol: str, content: bytes) -> int:
    """How many tickets a response answers (-1 when it is not the expected shape)."""
    try:
        reply = json.loads(content)
        if protocol == "v1":
            return len(reply["predictions"])
        return len(next(o for o in reply["outputs"] if o["name"] == "label_category")["data"])
    except (ValueError, KeyError, TypeError, StopIteration):
        return -1


class Server:
    """`python -m ticketflow.serving` in a subprocess on a free loopback port, request log in `workdir`."""

    def __init__(self, home: Path, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env |= {
            "TICKETFLOW_HOME": str(home),
            "TICKETFLOW_PREDICTION_LOG": f"sqlite:///{workdir / 'server-predictions.db'}",
            "OMP_NUM_THREADS": str(TORCH_THREADS),
            "MKL_NUM_THREADS": str(TORCH_THREADS),
        }
        command = [sys.executable, "-m", "ticketflow.serving", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = workdir / "server.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [*command, "--reload-interval", "0"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Polls the readiness endpoint until it answers 200."""
        import requests

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def pids(self) -> list[int]:
        """The server's pid while it runs (its CPU counts as the benchmark's own)."""
        return [self.proc.pid] if self.proc.poll() is None else []

    def stop(self) -> None:
        """SIGTERM (graceful: flushes the request log), SIGKILL after 60 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def http_cell(server: Server, texts: list[str], protocol: str, size: int, concurrency: int, n: int) -> dict:
    """`n` requests of `size` tickets from `concurrency` client threads, one keep-alive session each."""
    import requests

    bodies = [
        body(protocol, window(texts, i, size, 17 * concurrency + (53 if protocol == "v2" else 0))) for i in range(n)
    ]
    url, local = server.url + PATHS[protocol], threading.local()

    def send(data: bytes) -> float | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        started = time.perf_counter()
        response = local.session.post(url, data=data, headers={"content-type": "application/json"}, timeout=60)
        seconds = time.perf_counter() - started
        return seconds if response.status_code == 200 and answered(protocol, response.content) == size else None

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        seconds = list(pool.map(send, bodies))
    wall = time.perf_counter() - started
    ok = [s for s in seconds if s is not None]
    cell = {"protocol": protocol, "tickets": size, "concurrency": concurrency, "requests": n, "errors": n - len(ok)}
    cell |= {"p50_ms": 1000 * median(ok), "p99_ms": 1000 * p99(ok), "tickets_per_s": len(ok) * size / wall}
    say(f"  HTTP {protocol} {size} ticket(s) × {concurrency}: {cell}")
    return cell


def count(key: str, quick: bool) -> int:
    """Calls, requests or rounds of one figure."""
    return COUNTS[key][1 if quick else 0]


def in_process(clf, texts: list[str], quick: bool) -> dict[str, dict[str, list[float]]]:
    """Seconds per `answer` of one ticket (beside the model's encodes), after idle pauses, and of 64 tickets."""
    from ticketflow.components.embed import encode_texts
    from ticketflow.serving.predictor import TicketBatch

    loaded, half = clf.loaded, len(texts) // 2
    encoder = loaded.model.encoder()

    def answer(batch: list[str]) -> None:
        clf.answer(loaded, TicketBatch(batch, "bench", "v1"))

    for i in range(5):  # first calls allocate buffers and fill caches
        answer([texts[i]])
    one = {
        "answer": lambda i: answer([texts[i % len(texts)]]),
        "encode": lambda i: encode_texts(encoder, [texts[(i + half) % len(texts)]], 64),
    }
    idle = {"answer": lambda i: answer([texts[(i + 29) % len(texts)]])}
    return {
        "single": interleaved(one, count("single", quick)),
        "idle": interleaved(idle, count("idle", quick), pause=IDLE_PAUSE),
        "batch": interleaved({"answer": lambda k: answer(window(texts, k, BATCH, 7))}, count("batch", quick)),
    }


def paired(clf, server: Server, texts: list[str], quick: bool) -> dict[str, dict[str, list[float]]]:
    """In-process `answer`, V1 and V2 interleaved on the same texts: one ticket, then batches of 64."""
    import requests

    from ticketflow.serving.predictor import TicketBatch

    session, loaded = requests.Session(), clf.loaded

    def over_http(protocol: str, batch: list[str]) -> None:
        data, headers = body(protocol, batch), {"content-type": "application/json"}
        response = session.post(server.url + PATHS[protocol], data=data, headers=headers, timeout=60)
        if response.status_code != 200 or answered(protocol, response.content) != len(batch):
            raise RuntimeError(f"{protocol}: HTTP {response.status_code}: {response.content[:300]!r}")

    def arms(size: int) -> dict:
        return {
            "in-process": lambda i: clf.answer(loaded, TicketBatch(window(texts, i, size, 307), "paired", "v1")),
            "v1": lambda i: over_http("v1", window(texts, i, size, 307)),
            "v2": lambda i: over_http("v2", window(texts, i, size, 307)),
        }

    with session:  # the untimed call before each single ticket keeps each side warm, as in back-to-back use
        return {
            "paired_single": interleaved(arms(1), count("paired_single", quick), warm=True),
            "paired_batch": interleaved(arms(BATCH), count("paired_batch", quick)),
        }


def report(stages: dict[str, dict[str, dict]], cells: list[dict]) -> tuple[list[dict], list[dict]]:
    """The summary rows (the three goals, paired where both sides can be) and the further figures.

    Args:
        stages: Stage → arm → `calls`, `p50_ms`, `p99_ms` (see `main`).
        cells: The HTTP cells.

    Returns:
        The summary rows and the further figures.
    """
    ps, pb = stages["paired_single"], stages["paired_batch"]
    in_ms, in_tps = ps["in-process"]["p50_ms"], 1000 * BATCH / pb["in-process"]["p50_ms"]
    summary, figures = [], []
    for protocol in ("v1", "v2"):
        http_ms, goal = ps[protocol]["p50_ms"], f"≤ baseline + {GOAL_HTTP_EXTRA_MS:g} ms"
        name = f"{protocol.upper()} one ticket over HTTP, p50, concurrency 1 (paired)"
        met = http_ms - in_ms <= GOAL_HTTP_EXTRA_MS
        summary.append(figure(name, http_ms, "ms", baseline=in_ms, baseline_label="in-process", goal=goal, met=met))
    for protocol in ("v1", "v2"):
        tps, goal = 1000 * BATCH / pb[protocol]["p50_ms"], f"≥ {GOAL_BATCH_RATIO}"
        name = f"{protocol.upper()} batches of {BATCH} over HTTP, concurrency 1 (paired)"
        met = tps / in_tps >= GOAL_BATCH_RATIO
        summary.append(figure(name, tps, "tickets/s", baseline=in_tps, baseline_label="in-process", goal=goal, met=met))
    p50, goal = stages["single"]["answer"]["p50_ms"], f"< {GOAL_SINGLE_MS:g} ms"
    name = "in-process `answer`, one ticket, p50 (embedding included)"
    summary.append(
        figure(name, p50, "ms", baseline=GOAL_SINGLE_MS, baseline_label="limit", goal=goal, met=p50 < GOAL_SINGLE_MS)
    )
    batch_tps = 1000 * BATCH / stages["batch"]["answer"]["p50_ms"]
    for cell in cells:
        name = f"{cell['protocol'].upper()} {cell['tickets']} ticket(s) over HTTP, concurrency {cell['concurrency']}"
        if cell["tickets"] == 1:
            figures.append(figure(name + ", p50", cell["p50_ms"], "ms", baseline=p50, baseline_label="in-process"))
            continue
        tps, several = cell["tickets_per_s"], cell["concurrency"] > 1  # concurrency 1 is decided by the paired rows
        goal, met = (f"≥ {GOAL_BATCH_RATIO}", tps / batch_tps >= GOAL_BATCH_RATIO) if several else ("", None)
        figures.append(
            figure(name, tps, "tickets/s", baseline=batch_tps, baseline_label="in-process", goal=goal, met=met)
        )
    idle, encode = stages["idle"]["answer"]["p50_ms"], stages["single"]["encode"]["p50_ms"]
    name = f"in-process `answer`, one ticket after {1000 * IDLE_PAUSE:.0f} ms idle, p50"
    figures.append(figure(name, idle, "ms", baseline=p50, baseline_label="back to back"))
    figures.append(figure("the model's encode of one text, p50", encode, "ms", baseline=p50, baseline_label="`answer`"))
    return summary, figures


def serving_notes(n_texts: int, texts_file: str, trained: float | None) -> list[str]:
    """What the serving figures measure, in two lines."""
    return [
        f"- Model: `{MODEL}` trained by `ticketflow run` on the bundled sample"
        + (f" in this run ({trained:.0f} s)" if trained else " (an existing home)")
        + f"; request texts: {n_texts} distinct tickets of `{texts_file}` (subject + body + tags), each request its "
        "own text or window of 64; torch 2 threads in both processes; request log on in both.",
        "- *Paired* rows interleave in-process `answer`, V1 and V2 round by round (rotating order, same texts, an "
        "untimed call of the same kind before each single ticket), so both sides see the same machine load; they "
        "decide goals 1 and 2. Goal 3 comes from the in-process stage, before the server started; the HTTP cells "
        "(one keep-alive `requests.Session` per client thread) are compared with that stage.",
    ]


def train_home(home: Path) -> float:
    """Trains a model on the bundled sample into a fresh home with the real CLI; returns the seconds it took."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    started = time.perf_counter()
    command = [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), "run"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serving", description=__doc__.split("\n")[0])
    output_arguments(parser)
    parser.add_argument("--home", type=Path, help="an already trained home (default: train one on the sample)")
    parser.add_argument("--texts", type=Path, default=SAMPLE, help="ticket CSV the request texts come from")
    args = parser.parse_args(argv)
    results, report_path = output_paths(args)
    os.chdir(ROOT)
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(TORCH_THREADS)
    import torch

    torch.set_num_threads(TORCH_THREADS)
    argv_kserve, sys.argv = sys.argv, sys.argv[:1]  # importing kserve parses sys.argv: hide ours
    try:
        from ticketflow.components.config import TicketflowConfig
        from ticketflow.monitoring.request_log import PredictionLog
        from ticketflow.serving.predictor import TicketClassifier
    finally:
        sys.argv = argv_kserve
    packages = ("torch", "kserve", "uvicorn", "requests", "sentence-transformers", "chromadb")
    run = run_facts("python -m benchmarks.bench_serving" + (" --quick" if args.quick else ""), args.quick, packages)
    texts = load_texts(args.texts)
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-bench-serving-"))
    home = args.home.resolve() if args.home else workdir / "home"
    trained = None if args.home else train_home(home)
    request_log = PredictionLog(f"sqlite:///{workdir / 'inprocess-predictions.db'}")
    clf = TicketClassifier(MODEL, TicketflowConfig(home=str(home)), request_log=request_log)
    clf.load()
    server = None
    try:
        with measure() as load_in:
            say(f"in-process: {len(texts)} distinct texts from {shown(args.texts)}")
            timings = clf.on_model_thread(lambda: in_process(clf, texts, args.quick)).result()
        server = Server(home, workdir)
        server.wait_ready()
        with measure(server.pids) as load_http:
            for protocol in ("v1", "v2"):  # warm-up: both protocols, both sizes
                for size in (1, BATCH):
                    http_cell(server, texts, protocol, size, 1, count("warm_up", args.quick))
            cells = [
                http_cell(server, texts, protocol, size, concurrency, count(f"http_{size}_{concurrency}", args.quick))
                for size in (1, BATCH)
                for concurrency in (1, 8)
                for protocol in ("v1", "v2")
            ]
            # On the model thread, as the server's predict runs: both sides have the same thread layout.
            timings |= clf.on_model_thread(lambda: paired(clf, server, texts, args.quick)).result()
    finally:
        if server is not None:
            server.stop()
        clf.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    stages = {
        stage: {arm: {"calls": len(s), "p50_ms": 1000 * median(s), "p99_ms": 1000 * p99(s)} for arm, s in arms.items()}
        for stage, arms in timings.items()
    }
    summary, figures = report(stages, cells)
    notes = serving_notes(len(texts), shown(args.texts), trained)
    run |= {"finished": datetime.now(UTC).isoformat(timespec="seconds")}
    run["other_cores"] = max((x.other_cores or 0.0) for x in (load_in, load_http))
    details = {"in_process_and_paired": stages, "http_cells": cells}
    data = {"run": run, "summary": summary, "figures": figures, "notes": notes, "details": details}
    save("serving", data, results, report_path)
    say(f"wrote the serving part of {results} and {report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
