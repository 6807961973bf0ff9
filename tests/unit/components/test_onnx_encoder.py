"""The predictor's ONNX Runtime encoder against PyTorch, with the real bundled model."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import ticketflow.components.onnx_encoder as onnx_module
from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL
from ticketflow.components.embed import encode_texts, load_sentence_model
from ticketflow.components.onnx_encoder import OnnxSentenceEncoder, onnx_encoder

# Mixed lengths, so that length-sorted batches must be put back in input order.
TEXTS = [
    "printer jammed",
    "the VPN client disconnects every hour since the last update and I cannot reach the file share",
    "Rückerstattung für eine doppelte Abbuchung, Rechnung 4711",
    "  password reset  ",
    "outlook keeps asking for credentials " * 30,
    "new laptop for the intern starting monday",
]


@pytest.fixture(scope="module")
def torch_encoder():
    return load_sentence_model(BUNDLED_EMBEDDING_MODEL)


@pytest.fixture(scope="module")
def onnx_encoded(torch_encoder):
    return onnx_encoder(torch_encoder)


def test_onnx_vectors_equal_pytorch_ones_in_input_order(torch_encoder, onnx_encoded) -> None:
    assert isinstance(onnx_encoded, OnnxSentenceEncoder)
    expected = encode_texts(torch_encoder, TEXTS, 64)
    for batch_size in (1, 2, 64):
        got = encode_texts(onnx_encoded, TEXTS, batch_size)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
    single = encode_texts(onnx_encoded, [TEXTS[1]], 64)
    np.testing.assert_allclose(single[0], expected[1], atol=1e-5)
    assert encode_texts(onnx_encoded, [], 64).shape == (0, expected.shape[1])


def test_large_calls_go_to_pytorch(torch_encoder, onnx_encoded, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(onnx_encoded, "_encode_batch", lambda texts: calls.append(len(texts)) or 1 / 0)
    many = (TEXTS * 2)[: onnx_encoded.torch_from]
    np.testing.assert_array_equal(encode_texts(onnx_encoded, many, 64), encode_texts(torch_encoder, many, 64))
    assert calls == []  # never reached ONNX Runtime
    with pytest.raises(ZeroDivisionError):
        encode_texts(onnx_encoded, many[:1], 64)
    assert calls == [1]


def test_loading_by_backend_name(onnx_encoded) -> None:
    assert isinstance(load_sentence_model(BUNDLED_EMBEDDING_MODEL, "onnx"), OnnxSentenceEncoder)
    with pytest.raises(ValueError, match="unknown embedding backend 'tensorrt'"):
        load_sentence_model(BUNDLED_EMBEDDING_MODEL, "tensorrt")


def test_a_model_it_cannot_reproduce_stays_on_pytorch(caplog: pytest.LogCaptureFixture) -> None:
    model = load_sentence_model(BUNDLED_EMBEDDING_MODEL)
    model[1].pooling_mode = "cls"
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.onnx_encoder"):
        assert onnx_encoder(model) is model
    assert "pooling 'cls'" in caplog.text


def test_vectors_outside_the_tolerance_keep_pytorch(
    torch_encoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_module, "TOLERANCE", -1.0)  # no difference can pass
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.onnx_encoder"):
        assert onnx_encoder(torch_encoder) is torch_encoder
    assert "vectors differ from PyTorch's" in caplog.text
