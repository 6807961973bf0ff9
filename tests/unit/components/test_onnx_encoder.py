"""The shared encoder (ONNX Runtime, fp32 or int8) against PyTorch, with the real bundled model."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import ticketflow.components.onnx_encoder as onnx_module
from ticketflow.components.config import BUNDLED_EMBEDDING_MODEL, TicketflowConfig
from ticketflow.components.embed import EncoderSpec, encode_texts, load_sentence_model
from ticketflow.components.onnx_encoder import OnnxSentenceEncoder, onnx_encoder

# Mixed lengths, so that a batch would pad, and one text longer than any token limit below.
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
def fp32_encoder():
    return onnx_encoder(load_sentence_model(BUNDLED_EMBEDDING_MODEL), "fp32")


@pytest.fixture(scope="module")
def int8_encoder():
    return EncoderSpec.from_config(TicketflowConfig()).load()  # `make run`'s encoder


def test_fp32_vectors_equal_pytorch_ones_in_input_order(torch_encoder, fp32_encoder) -> None:
    assert isinstance(fp32_encoder, OnnxSentenceEncoder) and fp32_encoder.precision == "fp32"
    expected = encode_texts(torch_encoder, TEXTS, 64)
    for batch_size in (1, 2, 64):
        got = encode_texts(fp32_encoder, TEXTS, batch_size)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert encode_texts(fp32_encoder, [], 64).shape == (0, expected.shape[1])


def test_int8_vectors_stay_close_to_fp32_and_the_defaults_pick_int8(int8_encoder, fp32_encoder) -> None:
    assert isinstance(int8_encoder, OnnxSentenceEncoder) and int8_encoder.precision == "int8"
    assert int8_encoder.max_seq_length == TicketflowConfig().embedding_max_tokens
    int8 = encode_texts(int8_encoder, TEXTS, 64)
    fp32 = encode_texts(fp32_encoder, TEXTS, 64)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosines = (int8 * fp32).sum(axis=1)
    assert cosines.min() > 0.98, cosines  # close, yet not the same vectors: hence their own cache key
    assert np.abs(int8 - fp32).max() > 1e-4


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_a_text_gets_the_same_vector_alone_and_inside_a_batch_of_64(precision, int8_encoder, fp32_encoder) -> None:
    encoder = {"int8": int8_encoder, "fp32": fp32_encoder}[precision]
    batch = (TEXTS * 11)[:64]
    together = encode_texts(encoder, batch, 64)
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(encode_texts(encoder, [text], 64)[0], together[i])


def test_the_token_limit_cuts_long_texts_only(torch_encoder) -> None:
    short_limit = onnx_encoder(load_sentence_model(BUNDLED_EMBEDDING_MODEL), "fp32", max_tokens=16)
    assert short_limit.max_seq_length == 16
    full = encode_texts(torch_encoder, TEXTS, 64)
    cut = encode_texts(short_limit, TEXTS, 64)
    np.testing.assert_allclose(cut[0], full[0], atol=1e-5)  # "printer jammed" is 5 tokens: untouched
    assert float(cut[4] @ full[4]) < 0.999  # 200+ tokens: cut to 16


def test_encoder_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown embedding precision 'fp16'"):
        EncoderSpec(BUNDLED_EMBEDDING_MODEL, "fp16")
    with pytest.raises(ValueError, match="max_tokens"):
        EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", -1)
    assert EncoderSpec(BUNDLED_EMBEDDING_MODEL, "int8", 256).key == f"{BUNDLED_EMBEDDING_MODEL}|int8|256"


def test_a_model_it_cannot_reproduce_stays_on_pytorch(caplog: pytest.LogCaptureFixture) -> None:
    model = load_sentence_model(BUNDLED_EMBEDDING_MODEL)
    model[1].pooling_mode = "cls"
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.onnx_encoder"):
        assert onnx_encoder(model, "int8", max_tokens=64) is model
    assert "pooling 'cls'" in caplog.text and "PyTorch at fp32" in caplog.text
    assert model.max_seq_length == 64  # the token limit holds on PyTorch too


def test_vectors_outside_the_tolerance_keep_pytorch(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    model = load_sentence_model(BUNDLED_EMBEDDING_MODEL)
    monkeypatch.setattr(onnx_module, "TOLERANCE", -1.0)  # no difference can pass
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.onnx_encoder"):
        assert onnx_encoder(model, "fp32") is model
    assert "vectors differ from PyTorch's" in caplog.text


def test_a_broken_quantisation_keeps_pytorch(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    model = load_sentence_model(BUNDLED_EMBEDDING_MODEL)
    monkeypatch.setattr(onnx_module, "INT8_MIN_COSINE", 1.01)  # no int8 vector can pass
    with caplog.at_level(logging.WARNING, logger="ticketflow.components.onnx_encoder"):
        assert onnx_encoder(model, "int8") is model
    assert "int8 vectors too far from fp32 ones" in caplog.text


def test_sessions_leave_the_cores_as_soon_as_a_run_ends(int8_encoder) -> None:
    # Spinning intra-op threads would hold both cores for the classifier that runs right after a ticket's encode.
    for session in (int8_encoder.session, int8_encoder.single_session):
        assert session.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"
