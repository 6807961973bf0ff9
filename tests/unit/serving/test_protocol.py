"""The serving protocols without a model or a server: tiny V1/V2 payloads in, ticket texts or 400s out; answers shaped.

V2 requests are decoded from JSON bytes by kserve's own `InferRequest.from_bytes`, as its REST server does.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from ticketflow.components.model import TargetPrediction
from ticketflow.serving.protocol import (
    REQUEST_ID_CHARS,
    SNIPPET_CHARS,
    TOP_K,
    RejectedRequest,
    RequestRules,
    TicketBatch,
    label_answer,
    parse_request,
    similar_answers,
    ticket_answers,
    v1_response,
    v2_input_types,
    v2_output_types,
    v2_response,
)

RULES = RequestRules(text_columns=("subject", "body", "tags"), tags_column="tags", max_batch_size=4, max_text_chars=50)
# A model trained on an export with other column names: its own columns come first, `Labels` holds its tags.
EXPORT_RULES = RequestRules(("Subject", "Body", "Labels"), "Labels", max_batch_size=4, max_text_chars=50)


def v2_request(*inputs: dict, request_id: str | None = None) -> InferRequest:
    """A V2 request decoded from its JSON body, as kserve's REST server decodes it."""
    body = json.dumps({"inputs": list(inputs), **({"id": request_id} if request_id else {})}).encode()
    return InferRequest.from_bytes(body, len(body), "ticket-classifier")


def text_input(data: list, shape: list[int] | None = None, datatype: str = "BYTES", name: str = "text") -> dict:
    return {"name": name, "datatype": datatype, "shape": shape if shape is not None else [len(data)], "data": data}


def rejection(payload: object, rules: RequestRules = RULES) -> RejectedRequest:
    with pytest.raises(RejectedRequest) as caught:
        parse_request(payload, rules, {"x-request-id": "req-1"})
    return caught.value


# ---- V1 requests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("instance", "text"),
    [
        ("printer jammed", "printer jammed"),
        ("  printer\n\tjammed \\n on floor 3 ", "printer jammed on floor 3"),  # real and escaped breaks collapse
        ({"subject": "VPN", "body": "drops hourly"}, "VPN drops hourly"),
        # Merged in the model's order, not the object's.
        ({"body": "drops hourly", "subject": "VPN"}, "VPN drops hourly"),
        (
            {"subject": "Refund", "body": "charged twice", "tags": ["billing", "urgent"]},
            "Refund charged twice billing urgent",
        ),
        ({"body": "charged twice", "tags": "billing;urgent,refund"}, "charged twice billing urgent refund"),
        ({"body": "charged twice", "tags": []}, "charged twice"),
        ({"subject": None, "body": "no subject"}, "no subject"),
        ({"title": "Title", "description": "described", "text": "texted"}, "Title described texted"),
        ({"body": "b", "unknown": 5}, "b"),  # other keys are ignored, whatever their type
    ],
)
def test_v1_instances_become_cleaned_texts(instance: object, text: str) -> None:
    batch = parse_request({"instances": [instance]}, RULES, {"x-request-id": "req-1"})
    assert batch == TicketBatch([text], "req-1", "v1")


def test_the_models_own_columns_are_text_fields_and_its_tags_column_holds_tags() -> None:
    instance = {"Labels": "vpn;remote", "Body": "drops hourly", "Subject": "VPN", "body": "also here"}
    batch = parse_request({"instances": [instance]}, EXPORT_RULES)
    assert batch.texts == ["VPN drops hourly vpn remote also here"]
    assert EXPORT_RULES.text_keys == [
        "Subject",
        "Body",
        "Labels",
        "subject",
        "title",
        "body",
        "description",
        "text",
        "tags",
    ]
    assert RULES.text_keys == ["subject", "body", "tags", "title", "description", "text"]


def test_a_batch_keeps_its_order_and_each_text_is_checked_alone() -> None:
    batch = parse_request({"instances": ["one", {"body": "two"}, "x" * 50]}, RULES)
    assert batch.texts == ["one", "two", "x" * 50]  # exactly at the limit is fine
    assert batch.protocol == "v1"


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [
        ({"x-request-id": "req-42"}, "req-42"),
        ({"x-request-id": "r" * 100}, "r" * REQUEST_ID_CHARS),
        ({"x-request-id": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_request_id_comes_from_the_header_or_is_generated(headers: dict | None, request_id: str | None) -> None:
    batch = parse_request({"instances": ["vpn"]}, RULES, headers)
    if request_id is None:
        assert re.fullmatch(r"[0-9a-f]{16}", batch.request_id), batch.request_id
    else:
        assert batch.request_id == request_id


@pytest.mark.parametrize("body", [b'{"instances": ["vpn drops"]}', bytearray(b'{"instances": ["vpn drops"]}')])
def test_a_json_body_sent_as_bytes_is_parsed(body: bytes) -> None:
    assert parse_request(body, RULES, {"x-request-id": "r"}) == TicketBatch(["vpn drops"], "r", "v1")


BAD_V1 = [
    ({"instances": []}, "empty_batch", "the request holds no tickets"),
    ({"instances": [""]}, "empty_text", "ticket 0 has empty or whitespace-only text"),
    ({"instances": ["ok", "  \n\t "]}, "empty_text", "ticket 1 has empty or whitespace-only text"),
    ({"instances": ["ok", "\\n\\r\\n"]}, "empty_text", "ticket 1 has empty or whitespace-only text"),
    ({"instances": [{"subject": "", "body": None}]}, "empty_text", "ticket 0 has empty or whitespace-only text"),
    ({"instances": ["x" * 51]}, "text_too_long", "ticket 0 has 51 characters; the maximum is 50"),
    ({"instances": [{"subject": "x" * 30, "body": "y" * 30}]}, "text_too_long", "ticket 0 has 61 characters"),
    ({"instances": ["a"] * 5}, "batch_too_large", "5 tickets in one request; the maximum is 4"),
    # The batch size is checked before any instance: a huge batch is refused without reading it.
    ({"instances": [42] * 5}, "batch_too_large", "5 tickets in one request; the maximum is 4"),
    ({"instances": [42]}, "bad_type", "instances[0] must be a string or an object with subject/body/tags, got int"),
    (
        {"instances": ["ok", None]},
        "bad_type",
        "instances[1] must be a string or an object with subject/body/tags, got NoneType",
    ),
    ({"instances": [["a", "b"]]}, "bad_type", "got list"),
    ({"instances": [{"subject": 5}]}, "bad_type", "instances[0].subject must be a string, got int"),
    ({"instances": [{"body": ["a", "b"]}]}, "bad_type", "instances[0].body must be a string, got list"),
    (
        {"instances": [{"body": "ok", "tags": [1, 2]}]},
        "bad_type",
        "instances[0].tags must be a string or a list of strings",
    ),
    ({"instances": [{"body": "ok", "tags": {"a": 1}}]}, "bad_type", "instances[0].tags must be a string, got dict"),
    (
        {"instances": [{"nothing": "here"}]},
        "no_text_field",
        "instances[0] has none of the text fields ['subject', 'body', 'tags', 'title', 'description', 'text']",
    ),
    ({"instances": [{}]}, "no_text_field", "instances[0] has none of the text fields"),
    ({"instances": "not a list"}, "bad_request", 'the body must be a JSON object with an "instances" list'),
    ({"instances": None}, "bad_request", 'the body must be a JSON object with an "instances" list'),
    ({"tickets": ["wrong key"]}, "bad_request", 'the body must be a JSON object with an "instances" list'),
    ([1, 2, 3], "bad_request", 'the body must be a JSON object with an "instances" list, got list'),
    (None, "bad_request", "got NoneType"),
    ("a ticket", "bad_request", "got str"),
    (b"{not json", "bad_request", "the body is not JSON: Expecting property name"),
    (b"", "bad_request", "the body is not JSON"),
    (b"\xff\xfe\x00", "bad_request", "the body is not JSON"),
    (b"[1, 2]", "bad_request", "got list"),
]


@pytest.mark.parametrize(("payload", "code", "message"), BAD_V1)
def test_bad_v1_requests_are_rejected_with_a_reason_and_a_clear_message(
    payload: object, code: str, message: str
) -> None:
    error = rejection(payload)
    assert isinstance(error, InvalidInput)  # what the server answers with HTTP 400
    assert error.code == code
    assert message in str(error)
    assert str(error) == error.reason  # kserve's name for the message


def test_limits_come_from_the_rules() -> None:
    roomy = RequestRules(("body",), "", max_batch_size=300, max_text_chars=20_000)
    assert len(parse_request({"instances": ["x" * 20_000] * 300}, roomy).texts) == 300
    assert rejection({"instances": ["x"] * 301}, roomy).code == "batch_too_large"
    assert rejection({"instances": ["x" * 20_001]}, roomy).code == "text_too_long"


# ---- V2 requests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tensor", "texts"),
    [
        (text_input(["printer jammed", "reset my password"]), ["printer jammed", "reset my password"]),
        (text_input(["printer jammed", "vpn"], shape=[2, 1]), ["printer jammed", "vpn"]),
        (text_input([" spaced \n out "]), ["spaced out"]),
    ],
)
def test_v2_text_input_becomes_texts(tensor: dict, texts: list[str]) -> None:
    batch = parse_request(v2_request(tensor), RULES, {"x-request-id": "req-1"})
    assert batch == TicketBatch(texts, "req-1", "v2")


def test_v2_bytes_elements_are_decoded_as_utf8() -> None:
    request = v2_request(text_input(["x"]))
    request.inputs[0]._data = ["caf\u00e9 wifi down".encode()]
    assert parse_request(request, RULES).texts == ["caf\u00e9 wifi down"]


def test_v2_request_id_wins_over_the_header() -> None:
    batch = parse_request(v2_request(text_input(["vpn"]), request_id="v2-7"), RULES, {"x-request-id": "header"})
    assert batch.request_id == "v2-7"


BAD_V2 = [
    (v2_request(), "bad_v2_input", "expected exactly one input named 'text', got []"),
    (
        v2_request(text_input(["x"], name="body")),
        "bad_v2_input",
        "expected exactly one input named 'text', got ['body']",
    ),
    (
        v2_request(text_input(["a"]), text_input(["b"])),
        "bad_v2_input",
        "expected exactly one input named 'text', got ['text', 'text']",
    ),
    (v2_request(text_input([1.0], datatype="FP32")), "bad_v2_input", "input 'text' must have datatype BYTES, got FP32"),
    (
        v2_request(text_input(["a", "b", "c", "d"], shape=[2, 2])),
        "bad_v2_input",
        "input 'text' must have shape [n] or [n, 1], got [2, 2]",
    ),
    (v2_request(text_input(["a"], shape=[1, 1, 1])), "bad_v2_input", "must have shape [n] or [n, 1], got [1, 1, 1]"),
    (v2_request(text_input(["a"], shape=[3])), "bad_v2_input", "input 'text' does not match its shape [3]"),
    (v2_request(text_input([5])), "bad_type", "ticket 0 must be a string, got int"),
    (v2_request(text_input(["ok", None])), "bad_type", "ticket 1 must be a string, got NoneType"),
    (v2_request(text_input([])), "empty_batch", "the request holds no tickets"),
    (v2_request(text_input(["ok", ""])), "empty_text", "ticket 1 has empty or whitespace-only text"),
    (v2_request(text_input(["x" * 51])), "text_too_long", "ticket 0 has 51 characters; the maximum is 50"),
    (v2_request(text_input(["a"] * 5)), "batch_too_large", "5 tickets in one request; the maximum is 4"),
]


@pytest.mark.parametrize(("request_", "code", "message"), BAD_V2)
def test_bad_v2_requests_are_rejected_with_a_reason_and_a_clear_message(
    request_: InferRequest, code: str, message: str
) -> None:
    error = rejection(request_)
    assert (error.code, isinstance(error, InvalidInput)) == (code, True)
    assert message in str(error)


def test_v2_bytes_that_are_not_utf8_are_rejected() -> None:
    request = v2_request(text_input(["x"]))
    request.inputs[0]._data = [b"\xff\xfe"]
    error = rejection(request)
    assert (error.code, str(error)) == ("bad_encoding", "ticket 0 is not valid UTF-8")
    assert isinstance(error.__cause__, UnicodeDecodeError)


# ---- answers ---------------------------------------------------------------------------------------------
CATEGORY = TargetPrediction(
    labels=np.array(["Network", "Billing"]),
    confidences=np.array([0.612345, 0.5]),
    classes=np.array(["Access", "Billing", "Hardware", "Network"]),
    probabilities=np.array([[0.2, 0.087655, 0.1, 0.612345], [0.1, 0.5, 0.25, 0.15]]),
)
PRIORITY = TargetPrediction(
    labels=np.array(["high", "low"]),
    confidences=np.array([0.9, 0.7]),
    classes=np.array(["high", "low"]),
    probabilities=np.array([[0.9, 0.1], [0.3, 0.7]]),
)
NEIGHBOURS = [
    (
        [{"id": "t9", "labels": {"category": "Network"}, "similarity": 0.9, "snippet": "VPN drops hourly"}],
        {"text": "reboot", "ticket_id": "t9", "similarity": 0.9},
    ),
    ([], None),
]


def test_label_answer_lists_the_most_probable_classes_first_rounded() -> None:
    assert label_answer(CATEGORY, 0) == {
        "label": "Network",
        "confidence": 0.6123,
        "top": [
            {"label": "Network", "confidence": 0.6123},
            {"label": "Access", "confidence": 0.2},
            {"label": "Hardware", "confidence": 0.1},
        ],
    }
    assert len(label_answer(CATEGORY, 1)["top"]) == TOP_K
    assert label_answer(PRIORITY, 1)["top"] == [
        {"label": "low", "confidence": 0.7},
        {"label": "high", "confidence": 0.3},
    ]
    assert all(
        type(v) is str for v in (label_answer(CATEGORY, 0)["label"], label_answer(CATEGORY, 0)["top"][0]["label"])
    )


def test_ticket_answers_have_the_promised_shape() -> None:
    answers = ticket_answers(
        "req-42", {"category": CATEGORY, "priority": PRIORITY}, np.array([False, True]), NEIGHBOURS, "tc", "3"
    )
    assert [a["id"] for a in answers] == ["req-42-0", "req-42-1"]
    for answer, (similar, reply) in zip(answers, NEIGHBOURS, strict=True):
        assert set(answer) == {"id", "labels", "needs_review", "similar", "suggested_reply", "model"}
        assert list(answer["labels"]) == ["category", "priority"]
        assert (answer["similar"], answer["suggested_reply"]) == (similar, reply)
        assert answer["model"] == {"name": "tc", "version": "3"}
    assert [a["needs_review"] for a in answers] == [False, True]
    assert type(answers[1]["needs_review"]) is bool
    assert answers[1]["labels"]["priority"]["label"] == "low"
    json.dumps(answers)  # plain JSON: no numpy scalars left
    assert v1_response(answers) == {"predictions": answers}


def test_similar_answers_turn_store_hits_into_neighbours_and_a_reply() -> None:
    hits = {
        "ids": [["t1", "t2", "t3", "t4"], []],
        "metadatas": [
            [
                {"label:category": "Network", "label:priority": "high", "resolution": "", "source": "csv"},
                None,  # a neighbour without metadata still counts
                {"label:category": "Network", "resolution": "Call jo@example.com"},
                {"resolution": "too late: only the nearest good reply is suggested"},
            ],
            [],
        ],
        "distances": [[0.1, 0.15, 0.2000004, 0.21], []],
        "documents": [["vpn drops", None, "wifi slow", ""], []],  # a neighbour may have no text stored
    }
    (similar, reply), (none_similar, no_reply) = similar_answers(hits, 0.75, str.upper)
    assert similar == [
        {"id": "t1", "labels": {"category": "Network", "priority": "high"}, "similarity": 0.9, "snippet": "VPN DROPS"},
        {"id": "t2", "labels": {}, "similarity": 0.85, "snippet": ""},
        {"id": "t3", "labels": {"category": "Network"}, "similarity": 0.8, "snippet": "WIFI SLOW"},
        {"id": "t4", "labels": {}, "similarity": 0.79, "snippet": ""},
    ]
    assert reply == {"text": "CALL JO@EXAMPLE.COM", "ticket_id": "t3", "similarity": 0.8}  # masked by `mask`
    assert (none_similar, no_reply) == ([], None)


def test_a_similar_ticket_carries_a_masked_shortened_snippet() -> None:
    from ticketflow.serving.privacy import mask_personal_data

    text = "Keyboard keys stick. cc priya.s@example.com and ring me on +1 555 0188. " + "More detail. " * 20
    hits = {"ids": [["t1"]], "metadatas": [[{}]], "distances": [[0.1]], "documents": [[text]]}
    [([neighbour], _)] = similar_answers(hits, 0.75, mask_personal_data)
    shown = neighbour["snippet"]
    assert shown.startswith("Keyboard keys stick. cc [email] and ring me on [phone]. More detail.")
    assert len(shown) <= SNIPPET_CHARS and shown.endswith("…") and shown[-2] == "."  # cut after a whole word
    assert "priya" not in shown and "0188" not in shown
    # Masking off (cfg.mask_personal_data False): the predictor passes the identity, the snippet is the text.
    [([unmasked], _)] = similar_answers(hits, 0.75, lambda t: t)
    assert "priya.s@example.com" in unmasked["snippet"]


def test_hits_without_documents_give_empty_snippets() -> None:
    hits = {"ids": [["t1"]], "metadatas": [[{}]], "distances": [[0.1]]}  # a query that did not include documents
    assert similar_answers(hits, 0.75, str)[0][0] == [{"id": "t1", "labels": {}, "similarity": 0.9, "snippet": ""}]
    assert similar_answers({**hits, "documents": None}, 0.75, str)[0][0][0]["snippet"] == ""


@pytest.mark.parametrize(("min_similarity", "reply_from"), [(0.85, None), (0.8, "t3"), (0.0, "t3")])
def test_a_reply_needs_a_resolution_and_enough_similarity(min_similarity: float, reply_from: str | None) -> None:
    hits = {
        "ids": [["t1", "t3"]],
        "metadatas": [[{"resolution": ""}, {"resolution": "reboot"}]],
        "distances": [[0.1, 0.2]],
    }
    [(_, reply)] = similar_answers(hits, min_similarity, lambda text: text)
    assert (reply or {}).get("ticket_id") == reply_from


def test_v2_response_names_one_tensor_per_output() -> None:
    answers = ticket_answers(
        "r", {"category": CATEGORY, "priority": PRIORITY}, np.array([True, False]), NEIGHBOURS, "tc", "3"
    )
    body, _ = v2_response("r", answers, "tc").to_rest()
    assert (body["id"], body["model_name"], body["model_version"]) == ("r", "tc", "3")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert [o["name"] for o in body["outputs"]] == [t["name"] for t in v2_output_types(["category", "priority"])]
    assert outputs["label_category"] == {
        "name": "label_category",
        "shape": [2],
        "datatype": "BYTES",
        "data": ["Network", "Billing"],
    }
    assert outputs["confidence_priority"]["datatype"] == "FP32" and outputs["confidence_priority"][
        "data"
    ] == pytest.approx([0.9, 0.7])  # float32
    assert outputs["needs_review"] == {"name": "needs_review", "shape": [2], "datatype": "BOOL", "data": [True, False]}
    assert [json.loads(d) for d in outputs["details"]["data"]] == answers


def test_v2_response_without_answers_has_no_version() -> None:
    response = v2_response("r", [], "tc")
    assert response.model_version is None
    assert [o.name for o in response.outputs] == ["needs_review", "details"]


def test_v2_metadata() -> None:
    assert v2_input_types() == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert v2_output_types(["category"]) == [
        {"name": "label_category", "datatype": "BYTES", "shape": [-1]},
        {"name": "confidence_category", "datatype": "FP32", "shape": [-1]},
        {"name": "needs_review", "datatype": "BOOL", "shape": [-1]},
        {"name": "details", "datatype": "BYTES", "shape": [-1]},
    ]
    assert [o["name"] for o in v2_output_types(())] == ["needs_review", "details"]
