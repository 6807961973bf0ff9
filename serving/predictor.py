"""The ticket predictor: a `kserve.Model` answering category, priority, confidences and similar tickets.

It serves the MLflow model behind the `champion` alias (or the model directory a KServe `storageUri`
delivers), embeds each ticket once, classifies it for every target, looks up the most similar past tickets
in the model's own ChromaDB collection, and logs every answer to the prediction log. V1 and V2 (Open
Inference Protocol) requests share one path: `preprocess` validates and turns either into ticket texts,
`predict` computes the answers on the model thread, `postprocess` shapes them for the protocol. What a request
may hold and how an answer looks live in `protocol.py`; this class loads, reloads, answers, counts and logs.

It waits rather than fails: with no champion, no vectors, or MLflow, ChromaDB or the database out of reach, it
stays not ready (`ready` False, the reason in `not_ready`, the log and `/metrics`; see `readiness.py`) and
`watch_champion` retries until a load succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferRequest, InferResponse

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import encode_texts
from ticketflow.components.model import TicketModel
from ticketflow.components.store import VectorStore
from ticketflow.monitoring.metrics import CONFIDENCE, MODEL_INFO, NEEDS_REVIEW, PREDICTIONS, RELOADS, TICKETS
from ticketflow.monitoring.request_log import PredictionLog, PredictionRecord
from ticketflow.serving.accounting import count_rejected
from ticketflow.serving.privacy import mask_personal_data
from ticketflow.serving.protocol import (
    RejectedRequest,
    RequestRules,
    TicketBatch,
    parse_request,
    similar_answers,
    ticket_answers,
    v1_response,
    v2_input_types,
    v2_output_types,
    v2_response,
)
from ticketflow.serving.readiness import (
    CHROMA,
    DATABASE,
    LOAD_ERROR,
    MLFLOW,
    NoChampionError,
    NotReadyError,
    NoVectorsError,
    as_not_ready_error,
    probe_tracking_server,
    publish_readiness,
    talking_to,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

# Seconds between load attempts while nothing is loaded and the reload interval is 0 (alias checks disabled):
# a predictor that never retried would stay not ready for good.
WAIT_RETRY_SECONDS = 10.0
# How long the MLflow tracking server gets to answer the reachability probe before a load attempt.
TRACKING_PROBE_TIMEOUT_SECONDS = 5.0
# What MLflow answers when the registered model or its alias does not exist: no champion, not an error.
ALIAS_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


@dataclass(frozen=True)
class LoadedModel:
    """Everything one model version needs to answer; swapped as a whole on reload."""

    model: TicketModel
    version: str
    store: VectorStore | None
    collection: str


class TicketClassifier(Model):
    """KServe model that routes support tickets.

    Args:
        name: Model name in the URL (`/v1/models/<name>:predict`); default `ticket-classifier`.
        cfg: Configuration (MLflow, vector store, limits, prediction log).
        model_dir: A model directory (what a `storageUri` delivers); None serves the registry alias.
        request_log: Where answered tickets are logged; None disables logging.
    """

    def __init__(
        self, name: str, cfg: TicketflowConfig, model_dir: str | None = None, request_log: PredictionLog | None = None
    ) -> None:
        super().__init__(name)
        self.cfg = cfg
        self.model_dir = model_dir
        self.request_log = request_log
        self.loaded: LoadedModel | None = None
        self.ready = False
        # Why nothing is loaded: None before the first attempt ends, and once a model is loaded.
        self.not_ready: NotReadyError | None = None
        publish_readiness(False, None)
        # Every torch call (warm-up and requests) runs on this one thread. torch's OpenMP runtime keeps a team of
        # worker threads per calling thread; with two calling threads their spinning workers fight over the cores
        # and one ticket's encode took 15-17 ms instead of 9 ms here (2 cores). One thread loses nothing: each
        # encode already uses every core.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketflow-model")
        self._reload_lock = asyncio.Lock()
        self._load_lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------------------
    def _champion_version(self) -> str | None:
        """The version behind the alias, or None when the registered model or the alias does not exist.

        Raises:
            NotReadyError: MLflow cannot be reached, or answers with another error.
        """
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        with talking_to(MLFLOW):
            mlflow.set_tracking_uri(self.cfg.tracking_uri)
            probe_tracking_server(self.cfg.tracking_uri, TRACKING_PROBE_TIMEOUT_SECONDS)
            try:
                found = MlflowClient().get_model_version_by_alias(
                    self.cfg.registered_model_name, self.cfg.champion_alias
                )
            except MlflowException as exc:
                # Not `champion.alias_version`, which answers None for every MLflow error, a refused connection too.
                if exc.error_code in ALIAS_NOT_FOUND_CODES:
                    return None
                raise
            return str(found.version)

    def _load_version(self, version: str | None) -> LoadedModel:
        """Loads a model (from `model_dir`, or a registry version) and opens its vector collection.

        Raises:
            NoChampionError: No version given, or `model_dir` does not exist.
            NoVectorsError: The model's vector collection is missing or empty.
            NotReadyError: A step failed (sorted by the service it talked to).
        """
        import mlflow

        with self._load_lock:
            if self.model_dir:
                source = self.model_dir
                if not Path(source).exists():
                    raise NoChampionError(f"model directory {source} (it does not exist)")
                version = _version_from_dir(Path(source))
            else:
                if version is None:
                    raise NoChampionError(
                        f"models:/{self.cfg.registered_model_name}@{self.cfg.champion_alias} "
                        f"(no champion in {self.cfg.tracking_uri}: train first with `make run`)"
                    )
                source = f"models:/{self.cfg.registered_model_name}/{version}"
            with talking_to(MLFLOW):
                mlflow.set_tracking_uri(self.cfg.tracking_uri)
                model: TicketModel = mlflow.pyfunc.load_model(source).unwrap_python_model().model
            # The collection is checked before the warm-up: a model waiting for its vectors costs no encoder.
            store = None
            if model.collection:
                with talking_to(CHROMA):
                    store = VectorStore(self.cfg.vector_store)
                    stored = store.count(model.collection)
                if stored == 0:
                    raise NoVectorsError(f"vector collection {model.collection!r} in {self.cfg.vector_store}")
            # The model's own encoder (`encoder_spec`: the training's model, precision and token limit). A new one is
            # built on the model thread (see `__init__`), holding every request behind it for a few seconds
            # (weights, ONNX export, int8 quantisation); a version that encodes the same way shares the served one.
            shared = model.reuse_encoder_of(self.loaded.model if self.loaded else None)
            # Warm up (and load, unless shared) now, not on the first request.
            self.on_model_thread(lambda: encode_texts(model.encoder(), ["warm-up"], 1)).result()
            log.info(
                "%s version %s: %s encoder %s",
                self.name,
                version,
                "shared" if shared else "new",
                model.encoder_spec.key,
            )
            log.info("loaded %s version %s (collection %s)", self.name, version, model.collection)
            return LoadedModel(model, str(version), store, model.collection)

    def _load_first(self) -> LoadedModel:
        """One attempt to get a model to answer with: the prediction log's database, the champion, the model.

        Raises:
            NoChampionError, NoVectorsError, NotReadyError: See `_load_version`; the database check fails as a
                `NotReadyError` with reason `database_unreachable`.
        """
        if self.request_log is not None:
            with talking_to(DATABASE):
                self.request_log.check()  # creates the tables when absent
        version = None if self.model_dir else self._champion_version()
        return self._load_version(version)

    def load(self) -> bool:
        """Loads the champion (or `model_dir`) and its vector collection; readiness follows.

        A failed load raises nothing: with no model loaded the predictor stays not ready (`not_ready` says why),
        with one loaded it keeps serving that one.

        Returns:
            Whether a model is loaded (`ready`).
        """
        try:
            new = self._load_first()
        except Exception as exc:
            failure = as_not_ready_error(exc)
            if self.loaded is None:
                self._wait_because(failure)
            else:
                log.error("load failed; still serving version %s: %s", self.loaded.version, failure, exc_info=exc)
            return self.ready
        self._swap(new)
        self._become_ready(new.version)
        return self.ready

    def _swap(self, new: LoadedModel) -> None:
        old = self.loaded
        self.loaded = new  # one assignment: a request reads `self.loaded` once, so it sees old or new, whole
        if old is not None:
            MODEL_INFO.remove(self.name, old.version)
        MODEL_INFO.labels(model=self.name, version=new.version).set(1)

    def _become_ready(self, version: str) -> None:
        waited = f" (was not ready: {self.not_ready.reason})" if self.not_ready else ""
        self.not_ready = None
        self.ready = True
        publish_readiness(True, None)
        log.info("%s is ready: serving version %s%s", self.name, version, waited)

    def _wait_because(self, failure: NotReadyError) -> None:
        """Records why nothing is loaded: metrics every time, one WARNING line per change of reason."""
        previous = self.not_ready
        self.not_ready = failure
        self.ready = False
        publish_readiness(False, failure.reason)
        if previous is None or previous.reason != failure.reason:
            log.warning(
                "%s is not ready (%s): %s; retrying until it loads",
                self.name,
                failure.reason,
                failure,
                exc_info=failure.error if failure.reason == LOAD_ERROR else None,  # unexpected: show where
            )
        else:
            log.debug("%s still not ready (%s): %s", self.name, failure.reason, failure)

    @property
    def not_ready_detail(self) -> str:
        """Why the model is not ready, for a 503 answer."""
        failure = self.not_ready
        if self.ready:
            return "it is ready"
        if failure is None:
            return "its first load is still running"
        return f"{failure.reason}: {failure}"

    async def reload(self, force: bool = False) -> dict[str, object]:
        """Loads the champion if the alias moved (or `force`), or whatever it can while nothing is loaded.

        A failed load keeps the old model serving; with none loaded, the predictor stays not ready.

        Returns:
            `reloaded`, the serving `version`, the `previous` version, and `error` (plus the not-ready `reason`
            while nothing is loaded) when the load failed.
        """
        loop = asyncio.get_running_loop()
        async with self._reload_lock:
            current = self.loaded.version if self.loaded else None
            if self.loaded is not None and self.model_dir:
                return {"reloaded": False, "version": current, "reason": "serving a fixed model directory"}
            try:
                if self.loaded is None:
                    new = await loop.run_in_executor(None, self._load_first)
                else:
                    target = await loop.run_in_executor(None, self._champion_version)
                    if target == current and not force:
                        return {"reloaded": False, "version": current}
                    new = await loop.run_in_executor(None, self._load_version, target)
            except Exception as exc:
                failure = as_not_ready_error(exc)
                if self.loaded is None:
                    self._wait_because(failure)
                    return {"reloaded": False, "version": None, "reason": failure.reason, "error": str(failure)}
                RELOADS.labels(result="failure").inc()
                log.error("reload failed; still serving version %s: %s", current, failure, exc_info=exc)
                return {"reloaded": False, "version": current, "error": str(failure)}
            self._swap(new)
            if current is None:
                self._become_ready(new.version)
            else:
                RELOADS.labels(result="success").inc()
                log.info("reloaded %s: version %s -> %s", self.name, current, new.version)
            return {"reloaded": True, "version": new.version, "previous": current}

    async def watch_champion(self, interval: float) -> None:
        """Loads a model, retrying until one loads, then follows the champion alias.

        While nothing is loaded it tries every `interval` seconds (every `WAIT_RETRY_SECONDS` when `interval` is
        0), at once when no attempt was made yet. Once loaded it checks every `interval` seconds whether the alias
        moved, and reloads when it did; with an `interval` of 0 or a fixed model directory it then stops.

        Args:
            interval: Seconds between attempts and alias checks; 0 disables the alias checks.
        """
        while self.loaded is None:
            if self.not_ready is not None:  # an attempt failed already (`load()` at start): wait before the next
                await asyncio.sleep(interval if interval > 0 else WAIT_RETRY_SECONDS)
            await self.reload()
        if interval <= 0 or self.model_dir:
            return
        while True:
            await asyncio.sleep(interval)
            await self.reload()

    def on_model_thread(self, fn: Callable[[], T]) -> Future[T]:
        """Runs `fn` on the thread that does all of this model's torch work (requests, warm-ups).

        Args:
            fn: A callable without arguments.

        Returns:
            Its future.
        """
        return self._executor.submit(fn)

    def stop(self) -> None:
        """Flushes the prediction log and stops the worker threads."""
        if self.request_log is not None:
            self.request_log.close()
        self._executor.shutdown(wait=True)

    # ---- request handling ----------------------------------------------------------------------------------
    def preprocess(self, payload: dict | InferRequest | Any, headers: dict[str, str] | None = None) -> TicketBatch:
        """Validates a V1 or V2 request and turns it into ticket texts (see `protocol.parse_request`).

        Args:
            payload: The decoded V1 body, a V2 `InferRequest`, or raw bytes.
            headers: The request's headers (`x-request-id`).

        Returns:
            The cleaned texts, the request id and the protocol to answer in.

        Raises:
            InvalidInput: The request is malformed (answered with HTTP 400 and the reason), counted under its code.
            ModelNotReady: No model is loaded yet (answered with HTTP 503 and the reason).
        """
        loaded = self.loaded
        if loaded is None:
            raise ModelNotReady(self.name, self.not_ready_detail)
        mapping = loaded.model.mapping
        rules = RequestRules(
            mapping.text_columns, mapping.tags_column, self.cfg.max_batch_size, self.cfg.max_text_chars
        )
        try:
            return parse_request(payload, rules, headers)
        except RejectedRequest as exc:
            count_rejected(exc.code)  # under its precise reason; the server's middleware then leaves it alone
            raise

    async def predict(self, batch: TicketBatch, headers: dict[str, str] | None = None) -> tuple[TicketBatch, list]:
        """Answers every ticket of the batch (embedding and search run off the event loop)."""
        loaded = self.loaded  # read once: a concurrent reload never mixes two models in one answer
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(self._executor, self.answer, loaded, batch)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InferenceError(f"prediction failed: {type(exc).__name__}: {exc}") from exc
        return batch, answers

    def answer(self, loaded: LoadedModel, batch: TicketBatch) -> list[dict[str, object]]:
        """Computes the answers for validated tickets with one loaded model.

        Args:
            loaded: The model version to answer with.
            batch: Validated tickets.

        Returns:
            One answer per ticket: id, labels (label, confidence, top 3), needs_review, similar tickets,
            suggested reply and model name/version.
        """
        model, texts = loaded.model, batch.texts
        vectors = encode_texts(model.encoder(), texts, model.embed_batch_size)
        predictions = model.predict(texts, vectors)
        review = model.needs_review(predictions)
        neighbours = self._similar(loaded, vectors)
        answers = ticket_answers(batch.request_id, predictions, review, neighbours, self.name, loaded.version)
        records = [
            PredictionRecord(
                ticket_id=answer["id"],
                request_id=batch.request_id,
                text=self._mask(text),
                labels={target: label["label"] for target, label in answer["labels"].items()},
                confidences={target: label["confidence"] for target, label in answer["labels"].items()},
                needs_review=answer["needs_review"],
                model_name=self.name,
                model_version=loaded.version,
            )
            for text, answer in zip(texts, answers, strict=True)
        ]
        self._count(predictions, review)
        if self.request_log is not None:
            self.request_log.append(records)
        return answers

    def _mask(self, text: str) -> str:
        return mask_personal_data(text) if self.cfg.mask_personal_data else text

    def _similar(self, loaded: LoadedModel, vectors: np.ndarray) -> list[tuple[list[dict], dict | None]]:
        if loaded.store is None or self.cfg.similar_tickets <= 0:
            return [([], None)] * len(vectors)
        hits = loaded.store.query(loaded.collection, vectors, self.cfg.similar_tickets)
        return similar_answers(hits, self.cfg.reply_min_similarity, self._mask)

    def _count(self, predictions: dict, review: np.ndarray) -> None:
        TICKETS.labels(model=self.name).inc(len(review))
        NEEDS_REVIEW.labels(model=self.name).inc(int(review.sum()))
        for target, prediction in predictions.items():
            for label, confidence in zip(prediction.labels, prediction.confidences, strict=True):
                PREDICTIONS.labels(model=self.name, target=target, label=str(label)).inc()
                CONFIDENCE.labels(model=self.name, target=target).observe(float(confidence))

    def postprocess(
        self,
        result: tuple[TicketBatch, list],
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """Shapes the answers: `{"predictions": [...]}` for V1, named output tensors for V2."""
        batch, answers = result
        if batch.protocol == "v1":
            return v1_response(answers)
        return v2_response(batch.request_id, answers, self.name)

    def get_input_types(self) -> list[dict]:
        """V2 metadata: one BYTES input `text`, one ticket per element."""
        return v2_input_types()

    def get_output_types(self) -> list[dict]:
        """V2 metadata: label and confidence per target, needs_review, and the V1 answer as JSON."""
        loaded = self.loaded
        return v2_output_types(loaded.model.targets if loaded else ())


def _version_from_dir(path: Path) -> str:
    """The registry version recorded beside a model directory, else the directory's name."""
    marker = path / "registered_model_version"
    return marker.read_text().strip() if marker.is_file() else path.name
