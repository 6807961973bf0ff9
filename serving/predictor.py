"""The ticket predictor: a `kserve.Model` answering category, priority, confidences and similar tickets.

It serves the MLflow model behind the `champion` alias (or the model directory a KServe `storageUri`
delivers), embeds each ticket once, classifies it for every target, looks up the most similar past tickets
in the model's own ChromaDB collection, and logs every answer to the prediction log. V1 and V2 (Open
Inference Protocol) requests share one path: `preprocess` validates and turns either into ticket texts,
`predict` computes the answers off the event loop, `postprocess` shapes them for the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput, ModelMissingError
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from ticketflow.components.config import TicketflowConfig
from ticketflow.components.embed import VectorStore, encode_texts
from ticketflow.components.model import TicketModel
from ticketflow.components.prepare import normalise_whitespace
from ticketflow.monitoring.metrics import CONFIDENCE, MODEL_INFO, NEEDS_REVIEW, PREDICTIONS, RELOADS, TICKETS
from ticketflow.monitoring.request_log import PredictionLog, PredictionRecord
from ticketflow.serving.accounting import count_rejected
from ticketflow.serving.privacy import mask_personal_data

T = TypeVar("T")

log = logging.getLogger(__name__)

TOP_K = 3
# Keys a V1 instance object may carry, merged in this order (the model's own text columns come first).
INSTANCE_TEXT_KEYS = ("subject", "title", "body", "description", "text", "tags")
TAG_KEYS = ("tags",)
V2_INPUT = "text"


def reject(reason: str, message: str) -> InvalidInput:
    """Counts a rejected request and returns the 400 error to raise."""
    count_rejected(reason)
    return InvalidInput(message)


@dataclass(frozen=True)
class LoadedModel:
    """Everything one model version needs to answer; swapped as a whole on reload."""

    model: TicketModel
    version: str
    store: VectorStore | None
    collection: str


@dataclass
class TicketBatch:
    """Validated tickets of one request."""

    texts: list[str]
    request_id: str
    protocol: str  # "v1" or "v2"


def _field_text(value: object, where: str, is_tags: bool) -> str:
    if value is None:
        return ""
    if is_tags and isinstance(value, list):
        if not all(isinstance(tag, str) for tag in value):
            raise reject("bad_type", f"{where} must be a string or a list of strings")
        return " ".join(value)
    if not isinstance(value, str):
        raise reject("bad_type", f"{where} must be a string, got {type(value).__name__}")
    return value.replace(";", " ").replace(",", " ") if is_tags else value


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
        # Every torch call (warm-up and requests) runs on this one thread. torch's OpenMP runtime keeps a team of
        # worker threads per calling thread; with two calling threads their spinning workers fight over the cores
        # and one ticket's encode took 15-17 ms instead of 9 ms here (2 cores). One thread loses nothing: each
        # encode already uses every core.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketflow-model")
        self._reload_lock = asyncio.Lock()
        self._load_lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------------------
    def _champion_version(self) -> str | None:
        import mlflow
        from mlflow import MlflowClient

        from ticketflow.components.register import alias_version

        mlflow.set_tracking_uri(self.cfg.tracking_uri)
        return alias_version(MlflowClient(), self.cfg.registered_model_name, self.cfg.champion_alias)

    def _load_version(self, version: str | None) -> LoadedModel:
        """Loads a model (from `model_dir`, or a registry version) and opens its vector collection."""
        import mlflow

        with self._load_lock:
            if self.model_dir:
                source = self.model_dir
                if not Path(source).exists():
                    raise ModelMissingError(source)
                version = _version_from_dir(Path(source))
            else:
                if version is None:
                    raise ModelMissingError(
                        f"models:/{self.cfg.registered_model_name}@{self.cfg.champion_alias} "
                        f"(no champion in {self.cfg.tracking_uri}: train first with `make run`)"
                    )
                mlflow.set_tracking_uri(self.cfg.tracking_uri)
                source = f"models:/{self.cfg.registered_model_name}/{version}"
            model: TicketModel = mlflow.pyfunc.load_model(source).unwrap_python_model().model
            backend = self.cfg.serving_embedding_backend
            # A new encoder is built on the model thread (see `__init__`), holding every request behind it for
            # about 3 s (weights, ONNX export); a version with the same embedding model shares the served one.
            shared = model.reuse_encoder_of(self.loaded.model if self.loaded else None, backend)
            # Warm up (and load, unless shared) now, not on the first request.
            self.on_model_thread(lambda: encode_texts(model.encoder(backend), ["warm-up"], 1)).result()
            log.info("%s version %s: %s encoder", self.name, version, "shared" if shared else "new")
            store = VectorStore(self.cfg.vector_store) if model.collection else None
            if store is not None and store.count(model.collection) == 0:
                raise ModelMissingError(f"vector collection {model.collection!r} in {self.cfg.vector_store}")
            log.info("loaded %s version %s (collection %s)", self.name, version, model.collection)
            return LoadedModel(model, str(version), store, model.collection)

    def load(self) -> bool:
        """Loads the champion (or `model_dir`) and its vector collection; readiness follows.

        Raises:
            ModelMissingError: No champion, no model directory, or its vector collection is missing.
        """
        version = None if self.model_dir else self._champion_version()
        self._swap(self._load_version(version))
        self.ready = True
        return self.ready

    def _swap(self, new: LoadedModel) -> None:
        old = self.loaded
        self.loaded = new  # one assignment: a request reads `self.loaded` once, so it sees old or new, whole
        if old is not None:
            MODEL_INFO.remove(self.name, old.version)
        MODEL_INFO.labels(model=self.name, version=new.version).set(1)

    async def reload(self, force: bool = False) -> dict[str, object]:
        """Loads the champion if the alias moved (or `force`); a failed load keeps the old model serving.

        Returns:
            `reloaded`, the serving `version`, the `previous` version, and `error` when the load failed.
        """
        loop = asyncio.get_running_loop()
        async with self._reload_lock:
            current = self.loaded.version if self.loaded else None
            if self.model_dir:
                return {"reloaded": False, "version": current, "reason": "serving a fixed model directory"}
            try:
                target = await loop.run_in_executor(None, self._champion_version)
                if target == current and not force:
                    return {"reloaded": False, "version": current}
                new = await loop.run_in_executor(None, self._load_version, target)
            except Exception as exc:
                RELOADS.labels(result="failure").inc()
                log.exception("reload failed; still serving version %s", current)
                return {"reloaded": False, "version": current, "error": f"{type(exc).__name__}: {exc}"}
            self._swap(new)
            RELOADS.labels(result="success").inc()
            log.info("reloaded %s: version %s -> %s", self.name, current, new.version)
            return {"reloaded": True, "version": new.version, "previous": current}

    async def watch_champion(self, interval: float) -> None:
        """Checks every `interval` seconds whether the champion alias moved, and reloads when it did."""
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
    def _instance_text(self, instance: object, index: int, model: TicketModel) -> str:
        where = f"instances[{index}]"
        if isinstance(instance, str):
            return instance
        if not isinstance(instance, Mapping):
            raise reject(
                "bad_type",
                f"{where} must be a string or an object with subject/body/tags, got {type(instance).__name__}",
            )
        keys = list(dict.fromkeys([*model.mapping.text_columns, *INSTANCE_TEXT_KEYS]))
        present = [k for k in keys if k in instance]
        if not present:
            raise reject("no_text_field", f"{where} has none of the text fields {keys}")
        tag_keys = {*TAG_KEYS, model.mapping.tags_column}
        return " ".join(_field_text(instance[k], f"{where}.{k}", k in tag_keys) for k in present)

    def _check_texts(self, texts: list[str]) -> list[str]:
        if not texts:
            raise reject("empty_batch", "the request holds no tickets")
        if len(texts) > self.cfg.max_batch_size:
            raise reject(
                "batch_too_large", f"{len(texts)} tickets in one request; the maximum is {self.cfg.max_batch_size}"
            )
        cleaned = []
        for i, text in enumerate(texts):
            text = normalise_whitespace(text)
            if not text:
                raise reject("empty_text", f"ticket {i} has empty or whitespace-only text")
            if len(text) > self.cfg.max_text_chars:
                raise reject(
                    "text_too_long", f"ticket {i} has {len(text)} characters; the maximum is {self.cfg.max_text_chars}"
                )
            cleaned.append(text)
        return cleaned

    def _v2_texts(self, request: InferRequest) -> list[str]:
        inputs = request.inputs or []
        if len(inputs) != 1 or inputs[0].name != V2_INPUT:
            raise reject(
                "bad_v2_input", f"expected exactly one input named {V2_INPUT!r}, got {[i.name for i in inputs]}"
            )
        tensor = inputs[0]
        if tensor.datatype != "BYTES":
            raise reject("bad_v2_input", f"input {V2_INPUT!r} must have datatype BYTES, got {tensor.datatype}")
        shape = list(tensor.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise reject("bad_v2_input", f"input {V2_INPUT!r} must have shape [n] or [n, 1], got {shape}")
        try:
            values = tensor.as_numpy().reshape(-1).tolist()
        except (ValueError, TypeError) as exc:
            raise reject("bad_v2_input", f"input {V2_INPUT!r} does not match its shape {shape}: {exc}") from exc
        texts = []
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise reject("bad_encoding", f"ticket {i} is not valid UTF-8") from exc
            if not isinstance(value, str):
                raise reject("bad_type", f"ticket {i} must be a string, got {type(value).__name__}")
            texts.append(value)
        return texts

    def preprocess(self, payload: dict | InferRequest | Any, headers: dict[str, str] | None = None) -> TicketBatch:
        """Validates a V1 or V2 request and turns it into ticket texts.

        Raises:
            InvalidInput: The request is malformed (answered with HTTP 400 and the reason).
        """
        loaded = self.loaded
        if loaded is None:
            raise InferenceError("model not loaded")
        request_id = (headers or {}).get("x-request-id") or uuid.uuid4().hex[:16]
        if isinstance(payload, bytes | bytearray):
            # A body sent with a non-JSON content type (curl -d sends a form type) arrives as bytes.
            try:
                payload = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise reject("bad_request", f"the body is not JSON: {exc}") from exc
        if isinstance(payload, InferRequest):
            texts, protocol = self._v2_texts(payload), "v2"
            request_id = payload.id or request_id
        elif isinstance(payload, Mapping):
            instances = payload.get("instances")
            if "instances" not in payload or not isinstance(instances, list):
                raise reject("bad_request", 'the body must be a JSON object with an "instances" list')
            if len(instances) > self.cfg.max_batch_size:  # before looking at each instance
                raise reject(
                    "batch_too_large",
                    f"{len(instances)} tickets in one request; the maximum is {self.cfg.max_batch_size}",
                )
            texts = [self._instance_text(x, i, loaded.model) for i, x in enumerate(instances)]
            protocol = "v1"
        else:
            raise reject(
                "bad_request", f'the body must be a JSON object with an "instances" list, got {type(payload).__name__}'
            )
        return TicketBatch(self._check_texts(texts), str(request_id)[:64], protocol)

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
        vectors = encode_texts(model.encoder(self.cfg.serving_embedding_backend), texts, model.embed_batch_size)
        predictions = model.predict(texts, vectors)
        review = model.needs_review(predictions)
        neighbours = self._similar(loaded, vectors)
        answers, records = [], []
        for i, text in enumerate(texts):
            ticket_id = f"{batch.request_id}-{i}"
            labels = {}
            for target, prediction in predictions.items():
                order = np.argsort(-prediction.probabilities[i])[:TOP_K]
                labels[target] = {
                    "label": str(prediction.labels[i]),
                    "confidence": round(float(prediction.confidences[i]), 4),
                    "top": [
                        {
                            "label": str(prediction.classes[j]),
                            "confidence": round(float(prediction.probabilities[i, j]), 4),
                        }
                        for j in order
                    ],
                }
            similar, reply = neighbours[i]
            answers.append(
                {
                    "id": ticket_id,
                    "labels": labels,
                    "needs_review": bool(review[i]),
                    "similar": similar,
                    "suggested_reply": reply,
                    "model": {"name": self.name, "version": loaded.version},
                }
            )
            records.append(
                PredictionRecord(
                    ticket_id=ticket_id,
                    request_id=batch.request_id,
                    text=self._mask(text),
                    labels={t: v["label"] for t, v in labels.items()},
                    confidences={t: v["confidence"] for t, v in labels.items()},
                    needs_review=bool(review[i]),
                    model_name=self.name,
                    model_version=loaded.version,
                )
            )
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
        out = []
        for ids, metas, distances in zip(hits["ids"], hits["metadatas"], hits["distances"], strict=True):
            similar, reply = [], None
            for ticket_id, meta, distance in zip(ids, metas, distances, strict=True):
                similarity = round(1.0 - float(distance), 4)  # cosine space: distance = 1 - similarity
                labels = {k.split(":", 1)[1]: v for k, v in (meta or {}).items() if k.startswith("label:")}
                similar.append({"id": ticket_id, "labels": labels, "similarity": similarity})
                resolution = (meta or {}).get("resolution", "")
                if reply is None and resolution and similarity >= self.cfg.reply_min_similarity:
                    reply = {"text": self._mask(resolution), "ticket_id": ticket_id, "similarity": similarity}
            out.append((similar, reply))
        return out

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
            return {"predictions": answers}
        n = len(answers)
        targets = list(answers[0]["labels"]) if answers else []
        outputs = []
        for target in targets:
            outputs.append(
                InferOutput(f"label_{target}", [n], "BYTES", [a["labels"][target]["label"] for a in answers])
            )
            outputs.append(
                InferOutput(f"confidence_{target}", [n], "FP32", [a["labels"][target]["confidence"] for a in answers])
            )
        outputs.append(InferOutput("needs_review", [n], "BOOL", [a["needs_review"] for a in answers]))
        outputs.append(InferOutput("details", [n], "BYTES", [json.dumps(a) for a in answers]))
        version = answers[0]["model"]["version"] if answers else None
        return InferResponse(
            response_id=batch.request_id, model_name=self.name, model_version=version, infer_outputs=outputs
        )

    def get_input_types(self) -> list[dict]:
        """V2 metadata: one BYTES input `text`, one ticket per element."""
        return [{"name": V2_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        """V2 metadata: label and confidence per target, needs_review, and the V1 answer as JSON."""
        loaded = self.loaded
        outputs = []
        for target in loaded.model.targets if loaded else ():
            outputs += [
                {"name": f"label_{target}", "datatype": "BYTES", "shape": [-1]},
                {"name": f"confidence_{target}", "datatype": "FP32", "shape": [-1]},
            ]
        return [
            *outputs,
            {"name": "needs_review", "datatype": "BOOL", "shape": [-1]},
            {"name": "details", "datatype": "BYTES", "shape": [-1]},
        ]


def _version_from_dir(path: Path) -> str:
    """The registry version recorded beside a model directory, else the directory's name."""
    marker = path / "registered_model_version"
    return marker.read_text().strip() if marker.is_file() else path.name
