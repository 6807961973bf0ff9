"""Encoding benchmark: `make run`'s encoder against a bare fp32 `SentenceTransformer.encode`, on real tickets.

    python -m benchmarks.bench_encoding            # it_service tickets (../shared/data), ≈ 15 min on 2 cores
    python -m benchmarks.bench_encoding --quick    # the bundled sample, a few rounds; writes to a temp folder

Every figure is a median beside its baseline measured in the same run. The tickets are random samples of the
real ones in arrival order (never sorted by length). The baseline is the call a user would write:
`SentenceTransformer.encode(texts, batch_size=64)` at fp32 (PyTorch, the model's own 256-token limit), with
torch on 2 threads; the server runs with `OMP_NUM_THREADS=2`.

1. Batched scoring: V1 requests of 64 tickets to `ticketflow serve` (request log on) against the bare encode of
   the same 64 texts, interleaved round by round. Goal: ≥ 3× the tickets per second. `make predict`'s scoring
   (`score_frame` on the same tickets, model loaded) is held to the same goal.
2. One ticket: V1 p50 against the bare single-text encode p50 of the same texts, interleaved. Goal: ≤ 1×.
3. Cold training encode: the embed step's `embed_with_cache` (fresh store, vectors written) over every ticket of
   the file against the bare encode of the same tickets. Goal: ≤ ½ the time.
4. Quality: the pipeline's classifier trained on the pipeline's split twice, on the bare fp32 vectors and on
   `make run`'s; macro-F1 within 0.3 points, and the overlap of each test ticket's 5 most similar training tickets.
5. Levers: each change alone on the same batches of 64, its throughput and its vectors' cosine to fp32.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.bench_serving import FOREIGN_ENV, MODEL, PATHS, Server, answered, body, train_home
from benchmarks.common import (
    ROOT,
    cpu_model,
    figure,
    interleaved,
    measure,
    median,
    output_arguments,
    output_paths,
    run_facts,
    save,
    say,
    shown,
)

DATA = ROOT.parent / "shared" / "data" / "it_service_tickets" / "tickets.csv"
SAMPLE = ROOT / "data" / "sample_tickets.csv"
THREADS = 2
BATCH = 64
BATCH_GOAL = 3.0  # batched scoring: at least 3× bare fp32 encode's tickets per second
SINGLE_GOAL = 1.0  # one ticket over HTTP: p50 at most bare fp32's single encode p50
COLD_GOAL = 0.5  # cold training encode: at most half the bare fp32 encode's time
QUALITY_GOAL = 0.003  # macro-F1 within 0.3 points of the fp32 encoder's
ROUNDS = {"batch": (20, 2), "single": (100, 5), "levers": (10, 1)}  # full, quick


def rounds(key: str, quick: bool) -> int:
    """Rounds of one measurement."""
    return ROUNDS[key][1 if quick else 0]


def arrival_sample(texts: list[str], n: int, seed: int) -> list[str]:
    """`n` texts drawn at random, kept in the order they arrived (the file's order)."""
    rng = np.random.default_rng(seed)
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=min(n, len(texts)), replace=False))]


def bare_encode(model, texts: list[str]) -> np.ndarray:
    """The baseline: what a user of sentence-transformers writes."""
    return model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)


def http_stage(server: Server, bare, batches: list[list[str]], singles: list[str], quick: bool) -> dict:
    """Batches of 64 and single tickets over V1, each interleaved with the bare encode of the same texts."""
    import requests

    session, url = requests.Session(), server.url + PATHS["v1"]

    def post(texts: list[str]) -> None:
        response = session.post(url, data=body("v1", texts), headers={"content-type": "application/json"}, timeout=120)
        if response.status_code != 200 or answered("v1", response.content) != len(texts):
            raise RuntimeError(f"V1 answered {response.status_code}: {response.text[:500]}")

    for texts in (batches[0], singles[:1]):  # warm-up, untimed
        post(texts)
        bare_encode(bare, texts)
    n_batch, n_single = rounds("batch", quick), rounds("single", quick)
    batch = interleaved(
        {
            "http": lambda i: post(batches[i % len(batches)]),
            "bare": lambda i: bare_encode(bare, batches[i % len(batches)]),
        },
        n_batch,
    )
    single = interleaved(
        {
            "http": lambda i: post([singles[i % len(singles)]]),
            "bare": lambda i: bare_encode(bare, [singles[i % len(singles)]]),
        },
        n_single,
        warm=True,
    )
    say(f"  batches of {BATCH}: HTTP {BATCH / median(batch['http']):.1f}/s, bare {BATCH / median(batch['bare']):.1f}/s")
    say(f"  one ticket p50: HTTP {1000 * median(single['http']):.1f} ms, bare {1000 * median(single['bare']):.1f} ms")
    return {"batch": batch, "single": single}


def predict_stage(home: Path, bare, batches: list[list[str]], quick: bool) -> dict:
    """`make predict`'s scoring (`score_frame`, the champion loaded once) against bare encode, batch by batch."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from ticketflow.components.champion import load_champion
    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.predict import score_frame

    cfg = TicketflowConfig(home=str(home))
    mlflow.set_tracking_uri(cfg.tracking_uri)
    _, model = load_champion(MlflowClient(), cfg.registered_model_name, cfg.champion_alias)
    frames = [pd.DataFrame({"text": texts}) for texts in batches]
    score_frame(model, frames[0])  # loads the encoder, untimed
    return interleaved(
        {
            "predict": lambda i: score_frame(model, frames[i % len(frames)]),
            "bare": lambda i: bare_encode(bare, batches[i % len(batches)]),
        },
        rounds("batch", quick),
    )


def cold_and_quality(path: Path, bare, spec, workdir: Path) -> dict:
    """Encodes every ticket both ways (timed once each), then trains and scores the classifier on each."""
    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.embed import VectorStore, embed_with_cache
    from ticketflow.components.evaluate import evaluate_model
    from ticketflow.components.ingest import ingest_tickets
    from ticketflow.components.prepare import TEXT, TEXT_HASH, prepare_tickets
    from ticketflow.components.train import fit_ticket_model

    cfg = TicketflowConfig(home=str(workdir / "home"))
    ingested = ingest_tickets(path, cfg)
    prepared = prepare_tickets(ingested.tickets, ingested.mapping, cfg.test_size, cfg.seed)
    texts = prepared.train[TEXT].tolist() + prepared.test[TEXT].tolist()
    hashes = prepared.train[TEXT_HASH].tolist() + prepared.test[TEXT_HASH].tolist()
    say(f"cold encode of {len(texts)} tickets: `make run`'s encoder (embed step, fresh store), then bare fp32")
    started = time.perf_counter()
    ours, encoded = embed_with_cache(texts, hashes, spec, VectorStore(str(workdir / "chroma")), BATCH, progress=True)
    step_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fp32 = bare_encode(bare, texts)
    bare_seconds = time.perf_counter() - started
    say(f"  embed step {step_seconds:.1f} s ({encoded} encoded), bare fp32 {bare_seconds:.1f} s")
    n_train, target = len(prepared.train), ingested.mapping.category_column
    scores = {}
    for name, vectors in (("fp32", fp32), ("ours", ours)):
        model = fit_ticket_model(prepared.train, vectors[:n_train], ingested.mapping, cfg)
        evaluation = evaluate_model(model, prepared.test, vectors[n_train:], cfg.target_precision)
        scores[name] = evaluation.targets[target].macro_f1
        say(f"  {name} vectors: {target} macro-F1 {scores[name]:.4f}")
    return {
        "tickets": len(texts),
        "encoded": encoded,
        "step_seconds": step_seconds,
        "bare_seconds": bare_seconds,
        "target": target,
        "test_tickets": len(prepared.test),
        "macro_f1": scores,
        "top5_overlap": top_k_overlap(fp32[:n_train], fp32[n_train:], ours[:n_train], ours[n_train:], 5),
        "mean_cosine_to_fp32": float((fp32 * ours).sum(axis=1).mean()),
    }


def top_k_overlap(train_a, test_a, train_b, test_b, k: int) -> float:
    """Mean share of each test ticket's k most similar training tickets that both vector sets agree on."""
    shares = []
    for start in range(0, len(test_a), 512):
        part = slice(start, start + 512)
        near_a = np.argpartition(-(test_a[part] @ train_a.T), k, axis=1)[:, :k]
        near_b = np.argpartition(-(test_b[part] @ train_b.T), k, axis=1)[:, :k]
        shares += [len(set(a) & set(b)) / k for a, b in zip(near_a, near_b, strict=True)]
    return float(np.mean(shares))


def levers(model_name: str, bare, batches: list[list[str]], quick: bool) -> list[dict]:
    """Each lever alone, on the same batches of 64: tickets per second and mean cosine to the bare fp32 vectors."""
    from ticketflow.components.embed import encode_texts, load_sentence_model
    from ticketflow.components.onnx_encoder import onnx_encoder

    variants = {  # name → (precision, token limit, texts side by side)
        "ONNX Runtime fp32, one text per run, 256 tokens": ("fp32", 256, THREADS),
        "+ int8 weights": ("int8", 256, THREADS),
        "+ 128-token limit (`make run`)": ("int8", 128, THREADS),
        "`make run`, one text at a time (1 thread)": ("int8", 128, 1),
    }
    arms = {"bare fp32, padded batches of 64": lambda i: bare_encode(bare, batches[i % len(batches)])}
    encoders = {}
    for name, (precision, limit, workers) in variants.items():
        encoders[name] = onnx_encoder(load_sentence_model(model_name), precision, limit, threads=workers)
        arms[name] = lambda i, e=encoders[name]: encode_texts(e, batches[i % len(batches)], BATCH)
    seconds = interleaved(arms, rounds("levers", quick))
    texts = [t for b in batches for t in b]
    reference = bare_encode(bare, texts)
    rows = []
    for name, values in seconds.items():
        vectors = reference if name not in encoders else encode_texts(encoders[name], texts, BATCH)
        rows.append(
            {
                "lever": name,
                "tickets_per_s": BATCH / median(values),
                "mean_cosine_to_fp32": float((vectors * reference).sum(axis=1).mean()),
            }
        )
    base = rows[0]["tickets_per_s"]
    for row in rows:
        row["ratio"] = row["tickets_per_s"] / base
        rate, cosine = row["tickets_per_s"], row["mean_cosine_to_fp32"]
        say(f"  lever {row['lever']}: {rate:.1f}/s (×{row['ratio']:.2f}), cosine to fp32 {cosine:.4f}")
    return rows


def token_lengths(tokenizer, texts: list[str]) -> dict[str, float]:
    """Percentiles of the texts' token counts (uncut)."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    return {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}


def report(
    http: dict, predict: dict, cold: dict, lever_rows: list[dict], lengths: dict
) -> tuple[list, list, list, dict]:
    """Summary rows, further figures, notes and the levers table."""
    tps = {arm: BATCH / median(values) for arm, values in http["batch"].items()}
    predict_tps = {arm: BATCH / median(values) for arm, values in predict.items()}
    single = {arm: 1000 * median(values) for arm, values in http["single"].items()}
    f1 = cold["macro_f1"]
    summary = [
        figure(
            f"V1 batches of {BATCH} over HTTP",
            tps["http"],
            "tickets/s",
            baseline=tps["bare"],
            baseline_label="bare fp32 encode",
            goal=f"≥ {BATCH_GOAL:g}",
            met=tps["http"] / tps["bare"] >= BATCH_GOAL,
        ),
        figure(
            f"`make predict` scoring, {BATCH} tickets per call",
            predict_tps["predict"],
            "tickets/s",
            baseline=predict_tps["bare"],
            baseline_label="bare fp32 encode",
            goal=f"≥ {BATCH_GOAL:g}",
            met=predict_tps["predict"] / predict_tps["bare"] >= BATCH_GOAL,
        ),
        figure(
            "V1 one ticket over HTTP, p50",
            single["http"],
            "ms",
            baseline=single["bare"],
            baseline_label="bare fp32 single encode",
            goal=f"≤ {SINGLE_GOAL:g}",
            met=single["http"] <= SINGLE_GOAL * single["bare"],
        ),
        figure(
            f"cold encode of {cold['tickets']:,} tickets (embed step, fresh store)",
            cold["step_seconds"],
            "s",
            baseline=cold["bare_seconds"],
            baseline_label="bare fp32 encode",
            goal=f"≤ {COLD_GOAL:g}",
            met=cold["step_seconds"] <= COLD_GOAL * cold["bare_seconds"],
        ),
        figure(
            f"{cold['target']} macro-f1, `make run`'s vectors",
            f1["ours"],
            baseline=f1["fp32"],
            baseline_label="fp32 vectors",
            goal="≥ baseline − 0.003",
            met=f1["ours"] >= f1["fp32"] - QUALITY_GOAL,
        ),
    ]
    figures = [
        figure("top-5 similar training tickets shared with fp32's", cold["top5_overlap"]),
        figure("mean cosine of `make run`'s vectors to fp32's", cold["mean_cosine_to_fp32"]),
        figure("V1 one ticket over HTTP, p99", 1000 * float(np.percentile(http["single"]["http"], 99)), "ms"),
    ]
    notes = [
        "- Tickets: random samples of the file in arrival order (not sorted by length); token counts "
        + ", ".join(f"{k} {v:.0f}" for k, v in lengths.items())
        + ". Baseline: `SentenceTransformer.encode(texts, batch_size=64)` at fp32 (PyTorch, the model's 256-token "
        "limit, 2 torch threads) in the benchmark's process, interleaved round by round with the measured side.",
        "- `make run`'s encoder: ONNX Runtime, int8 weights (per-channel dynamic quantisation of the MatMuls), one "
        "text per run (no padding; a ticket's vector does not depend on its batch), two texts side by side on 2 "
        "cores (a ticket alone on both), 128 tokens. HTTP: `ticketflow serve` on 127.0.0.1 with the request log "
        "on, answering similar tickets too; the model is trained on the bundled sample, the request texts come from "
        "the file.",
        f"- Quality: the pipeline's classifier on the pipeline's split ({cold['test_tickets']:,} test tickets), "
        "trained once on each encoder's vectors of the same tickets; the top-5 overlap compares each test ticket's "
        "5 nearest training tickets by cosine.",
    ]
    table = {
        "columns": ["lever (alone, batches of 64)", "tickets/s", "× bare", "mean cosine to fp32"],
        "rows": [
            [r["lever"], f"{r['tickets_per_s']:.1f}", f"{r['ratio']:.2f}", f"{r['mean_cosine_to_fp32']:.4f}"]
            for r in lever_rows
        ],
    }
    return summary, figures, notes, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_encoding", description=__doc__.split("\n")[0])
    output_arguments(parser)
    parser.add_argument("--data", type=Path, help="ticket file (default: the it_service tickets; quick: the sample)")
    parser.add_argument("--home", type=Path, help="an already trained home to serve (default: train one)")
    args = parser.parse_args(argv)
    results, report_path = output_paths(args)
    path = args.data or (SAMPLE if args.quick else DATA)
    if not path.is_file():
        print(f"error: {path} not found (the shared data lives in ../shared/data beside the repo)", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
    import torch

    torch.set_num_threads(THREADS)
    from ticketflow.components.config import TicketflowConfig
    from ticketflow.components.embed import EncoderSpec, load_sentence_model
    from ticketflow.components.ingest import ingest_tickets
    from ticketflow.components.prepare import merge_text

    packages = ("torch", "onnxruntime", "sentence-transformers", "kserve")
    run = run_facts("python -m benchmarks.bench_encoding" + (" --quick" if args.quick else ""), args.quick, packages)
    spec = EncoderSpec.from_config(TicketflowConfig())
    bare = load_sentence_model(spec.model)
    workdir = Path(tempfile.mkdtemp(prefix="ticketflow-bench-encoding-"))
    server = None
    try:
        ingested = ingest_tickets(path, TicketflowConfig(home=str(workdir / "ingest")))
        texts = ingested.tickets.apply(merge_text, axis=1, mapping=ingested.mapping).tolist()  # arrival order
        lengths = token_lengths(bare.tokenizer, texts)
        say(f"{len(texts)} tickets of {shown(path)}; tokens {lengths}")
        batches = [arrival_sample(texts, BATCH, seed) for seed in range(rounds("batch", args.quick))]
        singles = arrival_sample(texts, rounds("single", args.quick), 1000)
        home = args.home.resolve() if args.home else workdir / "home"
        if not args.home:
            say("training a model on the bundled sample to serve")
            train_home(home)
        with measure() as load:
            server = Server(home, workdir)
            server.wait_ready()
            say("HTTP against bare encode")
            http = http_stage(server, bare, batches, singles, args.quick)
            server.stop()
            server = None
            say("`make predict`'s scoring against bare encode")
            predict = predict_stage(home, bare, batches, args.quick)
            say("levers")
            lever_rows = levers(spec.model, bare, batches[: rounds("levers", args.quick)], args.quick)
            cold = cold_and_quality(path, bare, spec, workdir)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary, figures, notes, table = report(http, predict, cold, lever_rows, lengths)
    run |= {"finished": datetime.now(UTC).isoformat(timespec="seconds"), "other_cores": load.other_cores}
    run["cpu"] = cpu_model()
    details = {
        "data": shown(path),
        "token_lengths": lengths,
        "http": {
            stage: {arm: {"calls": len(v), "median_s": median(v)} for arm, v in arms.items()}
            for stage, arms in http.items()
        },
        "predict": {arm: {"calls": len(v), "median_s": median(v)} for arm, v in predict.items()},
        "cold_and_quality": cold,
        "levers": lever_rows,
        "served_model": MODEL,
    }
    data = {
        "run": run,
        "summary": summary,
        "figures": figures,
        "notes": notes,
        "table": table,
        "details": details,
    }
    save("encoding", data, results, report_path)
    say(f"wrote the encoding part of {results} and {report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
