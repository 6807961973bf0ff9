"""The V2 infer route's decoding, without a server: JSON bodies, the binary tensor extension, and their errors."""

from __future__ import annotations

import json
import struct

import pytest
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane

from ticketflow.serving.protocol import v2_texts
from ticketflow.serving.v2_infer import decode_v2_request, is_json

TEXTS = ["printer jammed on floor 3", "VPN fällt aus"]
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def dataplane() -> DataPlane:
    return DataPlane(model_registry=ModelRepository())


def binary_body(texts: list[str]) -> tuple[bytes, dict[str, str]]:
    """A V2 request in the binary tensor extension (as tritonclient sends it): a JSON header, then raw BYTES."""
    raw = b"".join(struct.pack("<I", len(text.encode())) + text.encode() for text in texts)
    tensor = {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = {"inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"}
    return header + raw, headers


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/cloudevents+json", True),
        ("text/json", False),
        ("application/octet-stream", False),
        ("multipart/form-data", False),
    ],
)
def test_json_content_types_are_those_fastapi_parses_as_json(content_type: str | None, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_a_json_body_decodes_to_the_request_kserve_would_build(dataplane: DataPlane) -> None:
    body = {"id": "r-1", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS}]}
    request = decode_v2_request(json.dumps(body).encode(), JSON_TYPE, "ticket-classifier", dataplane)
    assert (request.id, request.model_name, v2_texts(request)) == ("r-1", "ticket-classifier", TEXTS)


def test_a_binary_tensor_request_decodes_with_kserve_s_own_decoder(dataplane: DataPlane) -> None:
    body, headers = binary_body(TEXTS)
    assert v2_texts(decode_v2_request(body, headers, "ticket-classifier", dataplane)) == TEXTS


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", ("body",)),
        (b'{"inputs": "text"}', ("body", "inputs")),
        (b'{"inputs": [{"name": "text", "shape": [1], "data": ["x"]}]}', ("body", "inputs", 0, "datatype")),
    ],
)
def test_a_json_body_that_is_not_a_v2_request_is_a_validation_error_at_its_place(
    dataplane: DataPlane, body: bytes, problem: tuple
) -> None:
    with pytest.raises(RequestValidationError) as raised:
        decode_v2_request(body, JSON_TYPE, "ticket-classifier", dataplane)
    locations = [error["loc"] for error in raised.value.errors()]
    assert problem in locations, locations


def test_a_body_neither_json_nor_binary_tensors_is_refused_by_kserve(dataplane: DataPlane) -> None:
    with pytest.raises(InvalidInput, match="inference-header-content-length"):
        decode_v2_request(b"x", {"content-type": "multipart/form-data"}, "ticket-classifier", dataplane)
