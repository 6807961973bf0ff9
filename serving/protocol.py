"""The predictor's two protocols, without a model: requests in (V1 and V2), answers out.

`parse_request` checks a request body (a V1 JSON object with an `instances` list, a V2 `InferRequest` with one
BYTES input `text`, or either as raw JSON bytes) and turns it into a `TicketBatch` of cleaned ticket texts.
Every problem raises `RejectedRequest`: an `InvalidInput`, which the server answers with HTTP 400 and the
message, naming the offending ticket or field; its `code` is the `reason` label the predictor counts it under.
The shaping functions build the V1 answer objects and the V2 `InferResponse` from the model's predictions
and the similar tickets found. Nothing here loads a model, counts a metric or logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from ticketflow.components.model import TargetPrediction
from ticketflow.components.prepare import normalise_whitespace
from ticketflow.components.privacy import snippet

TOP_K = 3  # classes listed, most probable first, under each target's `top`
# Keys a V1 instance object may carry, merged in this order (the model's own text columns come first).
INSTANCE_TEXT_KEYS = ("subject", "title", "body", "description", "text", "tags")
TAG_KEYS = ("tags",)
V2_INPUT = "text"
REQUEST_ID_CHARS = 64  # a caller's id is cut here: it becomes part of every ticket id and log row
SNIPPET_CHARS = 160  # a similar ticket's text is cut here (ellipsis included): enough to judge it at a glance


class RejectedRequest(InvalidInput):
    """A request the predictor refuses: HTTP 400 with `message` (also `reason`, kserve's name for it).

    Args:
        code: Short reason, the `reason` label of `ticketflow_requests_rejected_total` (`empty_text`, ...).
        message: What is wrong, for the caller.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RequestRules:
    """What a request may hold: the served model's text fields and the server's limits.

    Attributes:
        text_columns: The model's text columns; an instance object may use them besides `INSTANCE_TEXT_KEYS`.
        tags_column: The model's tags column (a list of strings, or a string split on ';' and ','), or "".
        max_batch_size: Most tickets in one request.
        max_text_chars: Longest ticket text, in characters, once its whitespace is collapsed.
    """

    text_columns: tuple[str, ...]
    tags_column: str
    max_batch_size: int
    max_text_chars: int

    @property
    def text_keys(self) -> list[str]:
        """Keys an instance object may carry, in the order their texts are merged."""
        return list(dict.fromkeys([*self.text_columns, *INSTANCE_TEXT_KEYS]))

    @property
    def tag_keys(self) -> set[str]:
        """Keys whose value holds tags."""
        return {*TAG_KEYS, self.tags_column}


@dataclass
class TicketBatch:
    """Validated tickets of one request.

    Attributes:
        texts: One cleaned text per ticket (whitespace collapsed), in request order.
        request_id: The caller's id (`x-request-id`, or the V2 request's `id`) or a generated one.
        protocol: "v1" or "v2": which shape the answer takes.
    """

    texts: list[str]
    request_id: str
    protocol: str  # "v1" or "v2"


# ---- requests --------------------------------------------------------------------------------------------
def field_text(value: object, where: str, is_tags: bool) -> str:
    """The text of one field of a V1 instance object.

    Args:
        value: The field's value: a string, None (no text), or for tags a list of strings.
        where: The field's place in the request (`instances[0].body`), for the error message.
        is_tags: The field holds tags: a list is joined with spaces, a string's ';' and ',' become spaces.

    Returns:
        The field's text ("" for None).

    Raises:
        RejectedRequest: Neither a string nor (for tags) a list of strings.
    """
    if value is None:
        return ""
    if is_tags and isinstance(value, list):
        if not all(isinstance(tag, str) for tag in value):
            raise RejectedRequest("bad_type", f"{where} must be a string or a list of strings")
        return " ".join(value)
    if not isinstance(value, str):
        raise RejectedRequest("bad_type", f"{where} must be a string, got {type(value).__name__}")
    return value.replace(";", " ").replace(",", " ") if is_tags else value


def instance_text(instance: object, index: int, rules: RequestRules) -> str:
    """The ticket text of one V1 instance: a string, or an object whose text fields are merged with spaces.

    Args:
        instance: One element of `instances`.
        index: Its position, for the error message.
        rules: The model's text fields.

    Returns:
        The ticket's text, not yet cleaned.

    Raises:
        RejectedRequest: Neither a string nor an object, no known text field, or a field of the wrong type.
    """
    where = f"instances[{index}]"
    if isinstance(instance, str):
        return instance
    if not isinstance(instance, Mapping):
        raise RejectedRequest(
            "bad_type",
            f"{where} must be a string or an object with subject/body/tags, got {type(instance).__name__}",
        )
    keys = rules.text_keys
    present = [k for k in keys if k in instance]
    if not present:
        raise RejectedRequest("no_text_field", f"{where} has none of the text fields {keys}")
    tag_keys = rules.tag_keys
    return " ".join(field_text(instance[k], f"{where}.{k}", k in tag_keys) for k in present)


def check_texts(texts: list[str], rules: RequestRules) -> list[str]:
    """Collapses each text's whitespace and checks the batch's size and each text's length.

    Args:
        texts: One raw text per ticket.
        rules: The limits.

    Returns:
        The cleaned texts.

    Raises:
        RejectedRequest: No ticket, too many, or a text that is empty (after cleaning) or too long.
    """
    if not texts:
        raise RejectedRequest("empty_batch", "the request holds no tickets")
    if len(texts) > rules.max_batch_size:
        raise RejectedRequest(
            "batch_too_large", f"{len(texts)} tickets in one request; the maximum is {rules.max_batch_size}"
        )
    cleaned = []
    for i, text in enumerate(texts):
        text = normalise_whitespace(text)
        if not text:
            raise RejectedRequest("empty_text", f"ticket {i} has empty or whitespace-only text")
        if len(text) > rules.max_text_chars:
            raise RejectedRequest(
                "text_too_long", f"ticket {i} has {len(text)} characters; the maximum is {rules.max_text_chars}"
            )
        cleaned.append(text)
    return cleaned


def v2_texts(request: InferRequest) -> list[str]:
    """The ticket texts of a V2 request: one input `text`, datatype BYTES, shape [n] or [n, 1].

    Args:
        request: The decoded V2 request.

    Returns:
        One raw text per element (bytes decoded as UTF-8).

    Raises:
        RejectedRequest: Another input, datatype or shape, data that does not fit the shape, bytes that are
            not UTF-8, or an element that is not a string.
    """
    inputs = request.inputs or []
    if len(inputs) != 1 or inputs[0].name != V2_INPUT:
        raise RejectedRequest(
            "bad_v2_input", f"expected exactly one input named {V2_INPUT!r}, got {[i.name for i in inputs]}"
        )
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise RejectedRequest("bad_v2_input", f"input {V2_INPUT!r} must have datatype BYTES, got {tensor.datatype}")
    shape = list(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise RejectedRequest("bad_v2_input", f"input {V2_INPUT!r} must have shape [n] or [n, 1], got {shape}")
    try:
        values = tensor.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError) as exc:
        raise RejectedRequest("bad_v2_input", f"input {V2_INPUT!r} does not match its shape {shape}: {exc}") from exc
    texts = []
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RejectedRequest("bad_encoding", f"ticket {i} is not valid UTF-8") from exc
        if not isinstance(value, str):
            raise RejectedRequest("bad_type", f"ticket {i} must be a string, got {type(value).__name__}")
        texts.append(value)
    return texts


def parse_request(
    payload: dict | InferRequest | bytes | Any, rules: RequestRules, headers: Mapping[str, str] | None = None
) -> TicketBatch:
    """Checks a V1 or V2 request and turns it into validated ticket texts.

    Args:
        payload: What kserve hands the model: a V1 body (decoded JSON), an `InferRequest`, or raw bytes (a
            body sent with a non-JSON content type).
        rules: The model's text fields and the server's limits.
        headers: The request's headers; `x-request-id` names the request (a V2 request's `id` wins).

    Returns:
        The cleaned texts, the request id (at most 64 characters; generated when the caller gave none) and
        the protocol the answer must speak.

    Raises:
        RejectedRequest: The request is malformed; the message says how.
    """
    request_id = (headers or {}).get("x-request-id") or uuid.uuid4().hex[:16]
    if isinstance(payload, bytes | bytearray):
        # A body sent with a non-JSON content type (curl -d sends a form type) arrives as bytes.
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RejectedRequest("bad_request", f"the body is not JSON: {exc}") from exc
    if isinstance(payload, InferRequest):
        texts, protocol = v2_texts(payload), "v2"
        request_id = payload.id or request_id
    elif isinstance(payload, Mapping):
        instances = payload.get("instances")
        if "instances" not in payload or not isinstance(instances, list):
            raise RejectedRequest("bad_request", 'the body must be a JSON object with an "instances" list')
        if len(instances) > rules.max_batch_size:  # before looking at each instance
            raise RejectedRequest(
                "batch_too_large",
                f"{len(instances)} tickets in one request; the maximum is {rules.max_batch_size}",
            )
        texts = [instance_text(x, i, rules) for i, x in enumerate(instances)]
        protocol = "v1"
    else:
        raise RejectedRequest(
            "bad_request", f'the body must be a JSON object with an "instances" list, got {type(payload).__name__}'
        )
    return TicketBatch(check_texts(texts, rules), str(request_id)[:REQUEST_ID_CHARS], protocol)


# ---- answers ---------------------------------------------------------------------------------------------
def label_answer(prediction: TargetPrediction, index: int) -> dict[str, object]:
    """One target's answer for one ticket: its label, confidence and the `TOP_K` most probable classes.

    Args:
        prediction: The target's predictions for the batch.
        index: The ticket's position in the batch.

    Returns:
        `{"label", "confidence", "top": [{"label", "confidence"}, ...]}`, confidences rounded to 4 places.
    """
    order = np.argsort(-prediction.probabilities[index])[:TOP_K]
    return {
        "label": str(prediction.labels[index]),
        "confidence": round(float(prediction.confidences[index]), 4),
        "top": [
            {"label": str(prediction.classes[j]), "confidence": round(float(prediction.probabilities[index, j]), 4)}
            for j in order
        ],
    }


def similar_answers(
    hits: Mapping[str, Sequence], min_similarity: float, mask: Callable[[str], str]
) -> list[tuple[list[dict], dict | None]]:
    """The similar tickets and the suggested reply of each ticket, from a vector store query.

    Each similar ticket carries a `snippet` of its text, so an agent can judge it without looking it up: masked
    with `mask` (the same function the prediction log masks with) before it is cut to `SNIPPET_CHARS` on a word
    boundary. A neighbour stored without text (a collection written without documents, or a query that did not ask
    for them) gets an empty snippet: the key is always there, so every answer has one shape.

    Args:
        hits: The store's answer: `ids`, `metadatas`, cosine `distances` and `documents` (the tickets' texts; may
            be absent or None), one list per ticket, nearest first. A neighbour's labels are its metadata keys
            `label:<target>`; its reply is `resolution`.
        min_similarity: Cosine similarity, 0–1, a neighbour needs for its resolution to be suggested.
        mask: Applied to a snippet and a suggested reply's text (personal data masking, or the identity).

    Returns:
        Per ticket: `[{"id", "labels", "similarity", "snippet"}, ...]`, and the reply of the nearest neighbour with
        a resolution at `min_similarity` or above (`{"text", "ticket_id", "similarity"}`), else None.
    """
    out = []
    documents = hits.get("documents") or [None] * len(hits["ids"])
    for ids, metas, distances, texts in zip(hits["ids"], hits["metadatas"], hits["distances"], documents, strict=True):
        similar, reply = [], None
        for j, (ticket_id, meta, distance) in enumerate(zip(ids, metas, distances, strict=True)):
            similarity = round(1.0 - float(distance), 4)  # cosine space: distance = 1 - similarity
            labels = {k.split(":", 1)[1]: v for k, v in (meta or {}).items() if k.startswith("label:")}
            text = texts[j] if texts is not None else None
            similar.append(
                {
                    "id": ticket_id,
                    "labels": labels,
                    "similarity": similarity,
                    "snippet": snippet(text, SNIPPET_CHARS, mask) if text else "",
                }
            )
            resolution = (meta or {}).get("resolution", "")
            if reply is None and resolution and similarity >= min_similarity:
                reply = {"text": mask(resolution), "ticket_id": ticket_id, "similarity": similarity}
        out.append((similar, reply))
    return out


def ticket_answers(
    request_id: str,
    predictions: Mapping[str, TargetPrediction],
    needs_review: Sequence[bool] | np.ndarray,
    neighbours: Sequence[tuple[list[dict], dict | None]],
    model_name: str,
    model_version: str,
) -> list[dict[str, object]]:
    """The V1 answer object of each ticket of a batch.

    Args:
        request_id: The batch's request id; ticket `i` gets the id `<request_id>-<i>`.
        predictions: Per target, the predictions for the batch.
        needs_review: Per ticket, whether an agent should check it.
        neighbours: Per ticket, its similar tickets and suggested reply (see `similar_answers`).
        model_name: The served model's name.
        model_version: The version that answered.

    Returns:
        One `{"id", "labels", "needs_review", "similar", "suggested_reply", "model"}` per ticket; each similar
        ticket is `{"id", "labels", "similarity", "snippet"}`.
    """
    return [
        {
            "id": f"{request_id}-{i}",
            "labels": {target: label_answer(prediction, i) for target, prediction in predictions.items()},
            "needs_review": bool(needs_review[i]),
            "similar": similar,
            "suggested_reply": reply,
            "model": {"name": model_name, "version": model_version},
        }
        for i, (similar, reply) in enumerate(neighbours)
    ]


def v1_response(answers: list[dict[str, object]]) -> dict[str, list]:
    """The V1 body: `{"predictions": [answer, ...]}`, one answer object per ticket (see `ticket_answers`)."""
    return {"predictions": answers}


def v2_response(request_id: str, answers: list[dict], model_name: str) -> InferResponse:
    """The V2 answer: named output tensors of shape [n], one element per ticket.

    `label_<target>` (BYTES) and `confidence_<target>` (FP32) per target, `needs_review` (BOOL), and `details`
    (BYTES): each ticket's V1 answer as JSON.

    Args:
        request_id: The response's id.
        answers: The V1 answer objects (see `ticket_answers`).
        model_name: The served model's name.

    Returns:
        The response; its `model_version` is the answering version (None for no answers).
    """
    n = len(answers)
    targets = list(answers[0]["labels"]) if answers else []
    outputs = []
    for target in targets:
        outputs.append(InferOutput(f"label_{target}", [n], "BYTES", [a["labels"][target]["label"] for a in answers]))
        outputs.append(
            InferOutput(f"confidence_{target}", [n], "FP32", [a["labels"][target]["confidence"] for a in answers])
        )
    outputs.append(InferOutput("needs_review", [n], "BOOL", [a["needs_review"] for a in answers]))
    outputs.append(InferOutput("details", [n], "BYTES", [json.dumps(a) for a in answers]))
    version = answers[0]["model"]["version"] if answers else None
    return InferResponse(response_id=request_id, model_name=model_name, model_version=version, infer_outputs=outputs)


def v2_input_types() -> list[dict]:
    """V2 metadata of the inputs: one BYTES input `text`, one ticket per element."""
    return [{"name": V2_INPUT, "datatype": "BYTES", "shape": [-1]}]


def v2_output_types(targets: Sequence[str]) -> list[dict]:
    """V2 metadata of the outputs: label and confidence per target, needs_review, and the V1 answer as JSON.

    Args:
        targets: The served model's label columns (none while no model is loaded).

    Returns:
        One `{"name", "datatype", "shape"}` per output, in the order `v2_response` answers them.
    """
    outputs = []
    for target in targets:
        outputs += [
            {"name": f"label_{target}", "datatype": "BYTES", "shape": [-1]},
            {"name": f"confidence_{target}", "datatype": "FP32", "shape": [-1]},
        ]
    return [
        *outputs,
        {"name": "needs_review", "datatype": "BOOL", "shape": [-1]},
        {"name": "details", "datatype": "BYTES", "shape": [-1]},
    ]
