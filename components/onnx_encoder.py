"""A sentence-transformers encoder run by ONNX Runtime: the same vectors, about half the time for one ticket.

PyTorch's eager mode spends most of a one-ticket encode on per-operator overhead; ONNX Runtime runs the same
graph fused. The transformer is exported in memory when the model loads (about 2 s, no files), the pooling is
done in numpy, and the result is checked against PyTorch on probe texts before it is used: any model this
cannot reproduce (another pooling, extra layers, an export failure) falls back to PyTorch with a warning, so a
configured model name always works.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

# Texts whose vectors must match PyTorch's before ONNX Runtime is used: short, long (truncated), padded
# together in one batch, with surrounding whitespace and non-ASCII characters.
PROBE_TEXTS = (
    "printer on floor 3 is jammed again",
    "  VPN drops every 10 minutes since the update; löschen Sie bitte mein Konto  ",
    " ".join(["the mailbox quota is exceeded and outlook cannot sync the shared calendar"] * 40),
)
# Largest absolute difference per vector component accepted against PyTorch (float32 rounding is ~1e-7).
TOLERANCE = 1e-5


# From this many texts in one call on, PyTorch is as fast or faster (its matrix kernels win once the matrices
# grow; measured with MiniLM on 2 cores: 1 text 6.1 vs 10.5 ms, 4 texts 25 vs 27 ms, 8 texts 51 vs 50 ms,
# 32 texts 239 vs 216 ms), so larger calls are handed to PyTorch.
TORCH_FROM_TEXTS = 8


class OnnxSentenceEncoder:
    """Encodes like `SentenceTransformer.encode` for a transformer followed by mean pooling (e.g. MiniLM).

    Args:
        session: ONNX Runtime session of the exported transformer (outputs the token embeddings).
        tokenizer: The model's Hugging Face tokenizer.
        max_seq_length: Tokens kept per text (longer texts are truncated, as sentence-transformers does).
        dimension: Length of a vector.
        lower_case: Lower-case texts before tokenising (the model's `do_lower_case`).
        torch_model: The `SentenceTransformer` itself, which encodes calls of `torch_from` texts or more.
        torch_from: Texts per call from which `torch_model` is used (when given).
    """

    def __init__(
        self,
        session,
        tokenizer,
        max_seq_length: int,
        dimension: int,
        lower_case: bool = False,
        torch_model=None,
        torch_from: int = TORCH_FROM_TEXTS,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.dimension = dimension
        self.lower_case = lower_case
        self.torch_model = torch_model
        self.torch_from = torch_from
        self.input_names = [i.name for i in session.get_inputs()]

    def get_embedding_dimension(self) -> int:
        """Length of a vector (as `SentenceTransformer.get_embedding_dimension`)."""
        return self.dimension

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t.lower() for t in texts] if self.lower_case else list(texts)
        tokens = self.tokenizer(
            texts, padding=True, truncation="longest_first", max_length=self.max_seq_length, return_tensors="np"
        )
        feeds = {name: np.asarray(tokens[name], dtype=np.int64) for name in self.input_names}
        token_vectors = self.session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        return (token_vectors * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
    ) -> np.ndarray:
        """Encodes texts batch by batch, longest first (less padding), returned in input order.

        Args:
            sentences: Texts to encode.
            batch_size: Texts per batch.
            show_progress_bar: Show a progress bar.
            normalize_embeddings: Scale each vector to unit length.
            convert_to_numpy: Accepted for compatibility; the result is always a numpy array.

        Returns:
            Float32 array of shape (len(sentences), dimension).
        """
        texts = list(sentences)
        if self.torch_model is not None and len(texts) >= self.torch_from:
            return np.asarray(
                self.torch_model.encode(
                    texts,
                    batch_size=batch_size,
                    show_progress_bar=show_progress_bar,
                    normalize_embeddings=normalize_embeddings,
                    convert_to_numpy=True,
                ),
                dtype=np.float32,
            )
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if show_progress_bar:  # not on the request path, which encodes one ticket at a time
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            index = order[start : start + batch_size]
            out[index] = self._encode_batch([texts[i] for i in index])
        if normalize_embeddings:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def _supported(model) -> str | None:
    """Why this sentence-transformers model cannot run here, or None when it can."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {names} (supported: Transformer, Pooling[, Normalize])"
    pooling = getattr(model[1], "pooling_mode", None)
    if pooling != "mean":
        return f"pooling {pooling!r} (supported: 'mean')"
    if not hasattr(model[0], "model") or model.tokenizer is None:
        return "no Hugging Face model or tokenizer inside the Transformer module"
    return None


def _export(model) -> bytes:
    """The model's transformer as an ONNX graph (token embeddings out), exported in memory."""
    import torch

    transformer = model[0].model.eval()
    input_names = list(model.tokenizer.model_input_names)

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            return self.transformer(**dict(zip(input_names, inputs, strict=True))).last_hidden_state

    example = model.tokenizer(["an example ticket"], return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in [*input_names, "token_embeddings"]}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and exporter notes about shapes; the probe check decides
        torch.onnx.export(
            TokenEmbeddings(),
            tuple(example[name] for name in input_names),
            buffer,
            input_names=input_names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def onnx_encoder(model, threads: int | None = None):
    """An `OnnxSentenceEncoder` equivalent to `model`, or `model` itself when that cannot be built.

    Args:
        model: A loaded `SentenceTransformer`.
        threads: ONNX Runtime intra-op threads; None uses torch's current thread count (which follows
            `OMP_NUM_THREADS`), so both backends use the same cores.

    Returns:
        The ONNX Runtime encoder when its vectors match PyTorch's on the probe texts, else `model`.
    """
    reason = _supported(model)
    if reason is None:
        try:
            import onnxruntime as ort
            import torch

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(_export(model), options, providers=["CPUExecutionProvider"])
            encoder = OnnxSentenceEncoder(
                session,
                model.tokenizer,
                model.max_seq_length,
                model.get_embedding_dimension(),
                lower_case=bool(getattr(model[0], "do_lower_case", False)),
            )
            expected = model.encode(
                list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            got = encoder.encode(PROBE_TEXTS, batch_size=len(PROBE_TEXTS), normalize_embeddings=True)
            difference = float(np.abs(np.asarray(expected) - got).max())
            if difference <= TOLERANCE:
                log.info(
                    "embedding: ONNX Runtime below %d texts per call, PyTorch from there (max difference %.1e)",
                    TORCH_FROM_TEXTS,
                    difference,
                )
                encoder.torch_model = model
                return encoder
            reason = f"vectors differ from PyTorch's by up to {difference:.1e} (tolerance {TOLERANCE:g})"
        except Exception as exc:  # any export or runtime failure: PyTorch still works
            reason = f"{type(exc).__name__}: {exc}"
    log.warning("embedding: ONNX Runtime not used (%s); encoding with PyTorch", reason)
    return model
