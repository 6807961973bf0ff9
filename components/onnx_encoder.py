"""The encoder training and serving share: a sentence-transformers model run by ONNX Runtime, int8 by default.

Why it is built this way (every figure is in BENCHMARKS.md, measured against a bare fp32
`SentenceTransformer.encode` in the same run):
- **ONNX Runtime, not PyTorch.** PyTorch's eager mode spends most of a short text's encode on per-operator overhead;
  ONNX Runtime runs the same graph fused. The transformer is exported in memory when the model loads (no files),
  the pooling is done in numpy, and the export is checked against PyTorch on probe texts before it is used.
- **One text per run.** Tickets come in random lengths (on it_service: median 30 tokens, p99 302), and a padded
  batch costs its longest text times its size; a text on its own is never padded. It also keeps a ticket's
  vector independent of the batch it came in, which int8 needs: dynamic quantisation scales the activations by
  the whole input tensor, so a text padded next to others would come out slightly different.
- **int8.** The weights of the matrix multiplications are quantised once, at load (`quantize_dynamic`); the
  vectors move a little against fp32, so the precision is part of the vector cache key and of the collection
  name (`EncoderSpec.key`), and training and serving use the same encoder.
- **A token limit.** Texts are truncated at `max_tokens` (0: the model's own limit).

Any model this cannot reproduce (another pooling, extra layers, an export failure) stays on PyTorch at fp32 with
a warning, so a configured model name always works.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Texts whose vectors must match PyTorch's before ONNX Runtime is used: short, long (truncated), padded
# together in one batch, with surrounding whitespace and non-ASCII characters.
PROBE_TEXTS = (
    "printer on floor 3 is jammed again",
    "  VPN drops every 10 minutes since the update; löschen Sie bitte mein Konto  ",
    " ".join(["the mailbox quota is exceeded and outlook cannot sync the shared calendar"] * 40),
)
# Largest absolute difference per vector component accepted against PyTorch at fp32 (float32 rounding is ~1e-7).
TOLERANCE = 1e-5
# Lowest cosine similarity an int8 vector may have with the fp32 one on the probe texts: quantisation moves
# vectors by ~1e-2 in cosine; a broken quantisation moves them far more.
INT8_MIN_COSINE = 0.95


class OnnxSentenceEncoder:
    """Encodes like `SentenceTransformer.encode` for a transformer followed by mean pooling (e.g. MiniLM).

    Args:
        session: ONNX Runtime session of the exported transformer (outputs the token embeddings), one thread: runs
            side by side when a call has several texts.
        tokenizer: The model's Hugging Face tokenizer.
        max_seq_length: Tokens kept per text (longer texts are truncated, as sentence-transformers does).
        dimension: Length of a vector.
        lower_case: Lower-case texts before tokenising (the model's `do_lower_case`).
        precision: `fp32` or `int8`: what the session computes in (reported, and part of the cache key).
        workers: Texts encoded at once, each in its own single-threaded run (on 2 cores, two runs side by side
            encode ~1.4× the texts per second of one run on two threads).
        single_session: A session of the same graph on `workers` threads, for a call with one text (a ticket
            alone: ~25 % faster than one thread, and the same vector to the bit); None uses `session`.
    """

    def __init__(
        self,
        session,
        tokenizer,
        max_seq_length: int,
        dimension: int,
        lower_case: bool = False,
        precision: str = "fp32",
        workers: int = 1,
        single_session=None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.dimension = dimension
        self.lower_case = lower_case
        self.precision = precision
        self.single_session = single_session or session
        self.input_names = [i.name for i in session.get_inputs()]
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="encoder") if workers > 1 else None

    def get_embedding_dimension(self) -> int:
        """Length of a vector (as `SentenceTransformer.get_embedding_dimension`)."""
        return self.dimension

    def _encode_one(self, tokens: dict[str, list[int]], session=None) -> np.ndarray:
        feeds = {name: np.asarray([tokens[name]], dtype=np.int64) for name in self.input_names}
        token_vectors = (session or self.session).run(None, feeds)[0][0]
        return token_vectors.mean(axis=0)  # one text, no padding: the mean pooling is a plain mean

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
    ) -> np.ndarray:
        """Encodes texts one by one (see the module's docstring), returned in input order.

        Args:
            sentences: Texts to encode.
            batch_size: Texts tokenised together (and the progress bar's step); it does not change a vector.
            show_progress_bar: Show a progress bar.
            normalize_embeddings: Scale each vector to unit length.
            convert_to_numpy: Accepted for compatibility; the result is always a numpy array.

        Returns:
            Float32 array of shape (len(sentences), dimension).
        """
        texts = [t.lower() for t in sentences] if self.lower_case else list(sentences)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), max(batch_size, 1))
        if show_progress_bar:  # not on the request path
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for start in starts:
            part = texts[start : start + batch_size]
            tokens = self.tokenizer(part, padding=False, truncation="longest_first", max_length=self.max_seq_length)
            rows = [{name: tokens[name][i] for name in self.input_names} for i in range(len(part))]
            if len(rows) == 1:
                vectors = [self._encode_one(rows[0], self.single_session)]
            elif self._pool is not None:
                vectors = list(self._pool.map(self._encode_one, rows))
            else:
                vectors = [self._encode_one(row) for row in rows]
            out[start : start + len(part)] = vectors
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


def quantize_int8(graph: bytes) -> bytes:
    """The graph with its matrix multiplications' weights quantised to int8 (activations quantised per run).

    Only MatMul: the token embeddings (Gather) and the layer norms stay fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _DropPreprocessingAdvice()
    root = logging.getLogger()  # the quantiser advises pre-processing through the root logger, every time
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory(prefix="ticketflow-onnx-") as folder:  # quantize_dynamic writes a file
            source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
            source.write_bytes(graph)
            # Per output channel: one scale per weight column keeps the vectors within ~0.006 in cosine of fp32
            # on real tickets (BENCHMARKS.md); one scale per matrix moved them by ~0.04 on 320 it_service tickets.
            quantize_dynamic(
                source, target, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8
            )
            return target.read_bytes()
    finally:
        root.removeFilter(advice)


class _DropPreprocessingAdvice(logging.Filter):
    """Drops onnxruntime's advice to pre-process a model before quantising it (shape inference, for CNNs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def _session(graph: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # The intra-op threads spin between a run's operators (waking them for each costs ~2 ms a ticket) but by default
    # also for a while after the run, holding both cores while the classifier runs next: one ticket's encode and
    # classification took ~9-13 ms instead of ~5.5-7. Stopping the spin at the end of each run keeps both fast.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def onnx_encoder(model, precision: str = "fp32", max_tokens: int = 0, threads: int | None = None):
    """The encoder for `model` at `precision`, or `model` itself (PyTorch, fp32) when ONNX cannot reproduce it.

    Args:
        model: A loaded `SentenceTransformer`.
        precision: `fp32` or `int8`.
        max_tokens: Tokens kept per text; 0 keeps the model's own limit.
        threads: Texts encoded side by side (`OnnxSentenceEncoder`'s `workers`); None uses torch's current thread count
            (which follows `OMP_NUM_THREADS`), so both backends use the same cores.

    Returns:
        An `OnnxSentenceEncoder` whose fp32 vectors match PyTorch's on the probe texts (and, at int8, stay close
        to them), else `model` with its `max_seq_length` set to `max_tokens`.
    """
    if max_tokens:
        model.max_seq_length = min(max_tokens, model.max_seq_length)
    reason = _supported(model)
    if reason is None:
        try:
            import torch

            threads = threads or torch.get_num_threads()
            graph = _export(model)

            def build(graph: bytes, precision: str, workers: int) -> OnnxSentenceEncoder:
                return OnnxSentenceEncoder(
                    _session(graph, 1),
                    model.tokenizer,
                    model.max_seq_length,
                    model.get_embedding_dimension(),
                    lower_case=bool(getattr(model[0], "do_lower_case", False)),
                    precision=precision,
                    workers=workers,
                    single_session=_session(graph, workers) if workers > 1 else None,
                )

            # At int8 the fp32 encoder only checks the export: one session, no second one for single texts.
            encoder = build(graph, "fp32", 1 if precision == "int8" else threads)
            expected = model.encode(
                list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            got = encoder.encode(PROBE_TEXTS, normalize_embeddings=True)
            difference = float(np.abs(np.asarray(expected) - got).max())
            if difference > TOLERANCE:
                reason = f"vectors differ from PyTorch's by up to {difference:.1e} (tolerance {TOLERANCE:g})"
            elif precision == "int8":
                encoder = build(quantize_int8(graph), "int8", threads)
                cosine = float((encoder.encode(PROBE_TEXTS, normalize_embeddings=True) * expected).sum(axis=1).min())
                if cosine < INT8_MIN_COSINE:
                    reason = f"int8 vectors too far from fp32 ones (cosine {cosine:.3f} < {INT8_MIN_COSINE})"
                else:
                    log.info("embedding: ONNX Runtime, int8 (lowest probe cosine to fp32 %.4f)", cosine)
                    return encoder
            else:
                log.info("embedding: ONNX Runtime, fp32 (max difference to PyTorch %.1e)", difference)
                return encoder
        except Exception as exc:  # any export or runtime failure: PyTorch still works
            reason = f"{type(exc).__name__}: {exc}"
    log.warning("embedding: ONNX Runtime not used (%s); encoding with PyTorch at fp32", reason)
    return model
