"""The settings object: defaults, the variables it reads, profiles, overrides, bad values, immutability.

And the rule that makes it the one place: no other module of the product reads (or writes) the environment.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tests.conftest import ROOT
from ticketflow.components.config import (
    BUNDLED_EMBEDDING_MODEL,
    CLUSTER_PROFILE,
    ENV_NAMES,
    ENV_PREFIX,
    PROFILES,
    TicketflowConfig,
    environment_with,
    export_to_environment,
)
from ticketflow.components.model import FORMS

# Every variable `from_env` reads.
VARIABLES = sorted({name for field in TicketflowConfig.model_fields for name in TicketflowConfig.env_names(field)})

# field, its variable, the variable's text, the value the field gets.
READ = [
    ("profile", "TICKETFLOW_PROFILE", "cluster", "cluster"),
    ("home", "TICKETFLOW_HOME", "/srv/ticketflow", "/srv/ticketflow"),
    ("mlflow_tracking_uri", "TICKETFLOW_MLFLOW_TRACKING_URI", "http://mlflow:5000", "http://mlflow:5000"),
    ("vector_store_uri", "TICKETFLOW_VECTOR_STORE", "http://chroma:8000", "http://chroma:8000"),
    ("seed", "TICKETFLOW_SEED", "7", 7),
    ("test_size", "TICKETFLOW_TEST_SIZE", "0.25", 0.25),
    ("text_columns", "TICKETFLOW_TEXT_COLUMNS", "subject, body", ("subject", "body")),
    ("category_column", "TICKETFLOW_CATEGORY_COLUMN", "queue", "queue"),
    ("priority_column", "TICKETFLOW_PRIORITY_COLUMN", "none", "none"),
    ("id_column", "TICKETFLOW_ID_COLUMN", "ticket", "ticket"),
    ("min_class_examples", "TICKETFLOW_MIN_CLASS_EXAMPLES", "3", 3),
    ("embedding_model", "TICKETFLOW_EMBEDDING_MODEL", "sentence-transformers/all-mpnet-base-v2", None),
    ("embed_batch_size", "TICKETFLOW_EMBED_BATCH_SIZE", "16", 16),
    ("embedding_precision", "TICKETFLOW_EMBEDDING_PRECISION", "fp32", "fp32"),
    ("embedding_max_tokens", "TICKETFLOW_EMBEDDING_MAX_TOKENS", "64", 64),
    ("cv_folds", "TICKETFLOW_CV_FOLDS", "3", 3),
    ("sgd_alphas", "TICKETFLOW_SGD_ALPHAS", "[1e-4, 1e-3]", (1e-4, 1e-3)),
    ("sgd_average", "TICKETFLOW_SGD_AVERAGE", "false", False),
    ("logistic_cs", "TICKETFLOW_LOGISTIC_CS", "4,16", (4.0, 16.0)),
    ("char_ngrams", "TICKETFLOW_CHAR_NGRAMS", "true", True),
    ("tfidf_min_dfs", "TICKETFLOW_TFIDF_MIN_DFS", "1", (1,)),
    ("neighbour_ks", "TICKETFLOW_NEIGHBOUR_KS", "3,10", (3, 10)),
    ("classifier_forms", "TICKETFLOW_CLASSIFIER_FORMS", "stack, text", ("stack", "text")),
    ("booster_iterations", "TICKETFLOW_BOOSTER_ITERATIONS", "40", 40),
    ("booster_learning_rate", "TICKETFLOW_BOOSTER_LEARNING_RATE", "0.2", 0.2),
    ("tuning_trials", "TICKETFLOW_TUNING_TRIALS", "3", 3),
    ("tuning_max_seconds", "TICKETFLOW_TUNING_MAX_SECONDS", "60", 60.0),
    ("target_precision", "TICKETFLOW_TARGET_PRECISION", "0.95", 0.95),
    ("calibration_bins", "TICKETFLOW_CALIBRATION_BINS", "10", 10),
    ("registered_model_name", "TICKETFLOW_MODEL_NAME", "ticket-router", "ticket-router"),
    ("champion_alias", "TICKETFLOW_MODEL_ALIAS", "stable", "stable"),
    ("challenger_alias", "TICKETFLOW_CHALLENGER_ALIAS", "candidate", "candidate"),
    ("image", "TICKETFLOW_IMAGE", "registry.example.com/ticketflow:1", None),
    ("git_commit", "TICKETFLOW_GIT_COMMIT", "0123abc", "0123abc"),
    (
        "prediction_log_uri",
        "TICKETFLOW_PREDICTION_LOG",
        "postgresql+psycopg://u:p@db:5432/log",
        "postgresql+psycopg://u:p@db:5432/log",
    ),
    ("log_buffer_records", "TICKETFLOW_LOG_BUFFER_RECORDS", "500", 500),
    ("log_retention_days", "TICKETFLOW_LOG_RETENTION_DAYS", "30", 30),
    ("mask_personal_data", "TICKETFLOW_MASK_PERSONAL_DATA", "false", False),
    ("max_text_chars", "TICKETFLOW_MAX_TEXT_CHARS", "1000", 1000),
    ("max_batch_size", "TICKETFLOW_MAX_BATCH_SIZE", "8", 8),
    ("max_body_bytes", "TICKETFLOW_MAX_BODY_BYTES", "4096", 4096),
    ("similar_tickets", "TICKETFLOW_SIMILAR_TICKETS", "0", 0),
    ("reply_min_similarity", "TICKETFLOW_REPLY_MIN_SIMILARITY", "0.5", 0.5),
    ("reload_interval_seconds", "TICKETFLOW_RELOAD_INTERVAL_SECONDS", "0", 0.0),
    ("api_token", "TICKETFLOW_API_TOKEN", "s3cret", SecretStr("s3cret")),
    ("host", "HOST", "0.0.0.0", "0.0.0.0"),  # nosec B104  # a value under test, not a bind
    ("port", "PORT", "9100", "9100"),
    ("model_dir", "TICKETFLOW_MODEL_DIR", "/mnt/models", "/mnt/models"),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the caller's shell leaks into these tests, and none the tests set leaks out of them."""
    for name in VARIABLES:
        monkeypatch.setenv(name, "")  # recorded, so that teardown also undoes `export_to_environment`
        monkeypatch.delenv(name)


# --- defaults and what is read --------------------------------------------------------------------------------


def test_defaults_with_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = TicketflowConfig.from_env()
    assert cfg == TicketflowConfig()
    assert (cfg.profile, cfg.home, cfg.seed, cfg.test_size) == ("local", ".ticketflow", 42, 0.2)
    assert (cfg.registered_model_name, cfg.champion_alias, cfg.challenger_alias) == (
        "ticket-classifier",
        "champion",
        "challenger",
    )
    assert cfg.embedding_model == BUNDLED_EMBEDDING_MODEL
    assert (cfg.embedding_precision, cfg.embedding_max_tokens) == ("int8", 128)
    assert (cfg.host, cfg.port, cfg.model_dir, cfg.api_token, cfg.git_commit) == ("127.0.0.1", "8080", "", None, "")
    home = (tmp_path / ".ticketflow").resolve()
    assert cfg.tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert cfg.vector_store == str(home / "chroma")
    assert cfg.prediction_log == f"sqlite:///{home / 'predictions.db'}"
    assert cfg.artifact_root == (home / "mlartifacts").as_uri()
    assert list(tmp_path.iterdir()) == []  # properties only name places; nothing is created


def test_the_table_below_covers_every_field() -> None:
    assert [field for field, *_ in READ] == list(TicketflowConfig.model_fields)


@pytest.mark.parametrize(("field", "variable", "text", "expected"), READ, ids=[row[0] for row in READ])
def test_each_field_is_read_from_its_variable(
    field: str, variable: str, text: str, expected: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert TicketflowConfig.env_names(field)[0] == variable
    if field in ENV_NAMES:
        assert variable in ENV_NAMES[field]  # one of the names kept from before
    else:
        assert variable == f"{ENV_PREFIX}{field.upper()}"
    monkeypatch.setenv(variable, text)
    value = getattr(TicketflowConfig.from_env(), field)
    assert value == (text if expected is None else expected)
    assert getattr(TicketflowConfig(), field) != value  # the default is something else
    assert getattr(TicketflowConfig.from_env(**{field: value}), field) == value  # an override of the same value


def test_only_mlflows_and_the_containers_names_lack_the_prefix() -> None:
    assert [name for name in VARIABLES if not name.startswith(ENV_PREFIX)] == ["HOST", "MLFLOW_TRACKING_URI", "PORT"]


def test_variable_names_are_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ticketflow_seed", "7")
    monkeypatch.setenv("HOME", "/home/someone")  # every shell's, not the state folder
    for field in ("port", "host", "seed", "image", "profile"):  # bare field names are no variables of ours
        monkeypatch.setenv(field, "1")
    assert TicketflowConfig.from_env() == TicketflowConfig()


def test_mlflow_tracking_uri_is_also_read_under_mlflows_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TicketflowConfig.env_names("mlflow_tracking_uri") == (
        "TICKETFLOW_MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    cfg = TicketflowConfig.from_env()
    assert cfg.mlflow_tracking_uri == cfg.tracking_uri == "http://mlflow.example:5000"
    monkeypatch.setenv("TICKETFLOW_MLFLOW_TRACKING_URI", "http://ours.example:5000")
    assert TicketflowConfig.from_env().mlflow_tracking_uri == "http://ours.example:5000"  # ours wins


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("TICKETFLOW_HOME", "MLFLOW_TRACKING_URI", "TICKETFLOW_SEED", "TICKETFLOW_TEXT_COLUMNS", "PORT"):
        monkeypatch.setenv(variable, "")
    assert TicketflowConfig.from_env() == TicketflowConfig()


def test_list_fields_take_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_TEXT_COLUMNS", '["subject", "body, with a comma"]')
    monkeypatch.setenv("TICKETFLOW_SGD_ALPHAS", " 1e-4 , 1e-3 ,")
    cfg = TicketflowConfig.from_env()
    assert cfg.text_columns == ("subject", "body, with a comma")
    assert cfg.sgd_alphas == (1e-4, 1e-3)
    monkeypatch.setenv("TICKETFLOW_LOGISTIC_CS", "[]")  # (an empty variable means the default)
    assert TicketflowConfig.from_env().logistic_cs == () == TicketflowConfig().logistic_cs  # none by default
    assert TicketflowConfig(text_columns=["a", "b"], neighbour_ks=[5]).neighbour_ks == (5,)  # lists → tuples


# --- constructing reads nothing; importing does nothing ---------------------------------------------------------


def test_constructing_reads_no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = TicketflowConfig()
    for _, variable, text, _ in READ:
        monkeypatch.setenv(variable, text)
    assert TicketflowConfig() == defaults
    assert TicketflowConfig(seed=1).home == defaults.home
    assert TicketflowConfig.from_env().home != defaults.home  # the variables are there, for from_env only


def test_importing_and_constructing_have_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "from ticketflow.components.config import TicketflowConfig\n"
        "TicketflowConfig(); TicketflowConfig.from_env(); TicketflowConfig(profile='cluster').tracking_uri\n"
        "heavy = [m for m in ('mlflow', 'chromadb', 'torch', 'kfp') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'env_changed': dict(os.environ) != before}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"heavy": [], "env_changed": False}
    assert list(tmp_path.iterdir()) == []  # no .ticketflow, no mlflow.db


# --- profiles -------------------------------------------------------------------------------------------------


def test_the_cluster_profile_points_at_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_PROFILE", "cluster")
    cfg = TicketflowConfig.from_env()
    assert cfg == TicketflowConfig(profile=CLUSTER_PROFILE)
    assert cfg.home == "/var/lib/ticketflow"
    assert cfg.tracking_uri == "http://mlflow.ticketflow.svc.cluster.local:5000"
    assert cfg.vector_store == "http://chroma.ticketflow.svc.cluster.local:8000"
    assert {name: getattr(cfg, name) for name in PROFILES[CLUSTER_PROFILE]} == dict(PROFILES[CLUSTER_PROFILE])
    assert cfg.seed == TicketflowConfig().seed  # the rest are the class defaults


def test_a_variable_or_an_argument_wins_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_PROFILE", "cluster")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://localhost:5000")
    cfg = TicketflowConfig.from_env(home="/tmp/elsewhere")
    assert (cfg.mlflow_tracking_uri, cfg.home) == ("http://localhost:5000", "/tmp/elsewhere")
    assert cfg.vector_store_uri == PROFILES[CLUSTER_PROFILE]["vector_store_uri"]
    assert TicketflowConfig(profile="cluster", home="here").home == "here"
    assert TicketflowConfig(profile="local") == TicketflowConfig()  # the local profile changes nothing


# --- overrides ------------------------------------------------------------------------------------------------


def test_overrides_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_SEED", "7")
    monkeypatch.setenv("TICKETFLOW_VECTOR_STORE", "http://chroma:8000")
    cfg = TicketflowConfig.from_env(seed=3, vector_store_uri="/data/chroma", min_class_examples=2)
    assert (cfg.seed, cfg.vector_store_uri, cfg.min_class_examples) == (3, "/data/chroma", 2)


@pytest.mark.parametrize("empty", ["", None, (), []], ids=repr)
def test_an_empty_override_keeps_the_variable_or_the_default(empty: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_VECTOR_STORE", "http://chroma:8000")
    monkeypatch.setenv("TICKETFLOW_TEXT_COLUMNS", "subject,body")
    cfg = TicketflowConfig.from_env(vector_store_uri=empty, text_columns=empty, category_column=empty, seed=empty)
    assert (cfg.vector_store_uri, cfg.text_columns) == ("http://chroma:8000", ("subject", "body"))
    assert (cfg.category_column, cfg.seed) == ("", 42)


def test_falsy_overrides_that_are_values_are_kept() -> None:
    cfg = TicketflowConfig.from_env(mask_personal_data=False, similar_tickets=0, reload_interval_seconds=0.0)
    assert (cfg.mask_personal_data, cfg.similar_tickets, cfg.reload_interval_seconds) == (False, 0, 0.0)


# --- bad values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("TICKETFLOW_SEED", "forty-two", "valid integer"),
        ("TICKETFLOW_SEED", "-1", "greater than or equal to 0"),
        ("TICKETFLOW_TEST_SIZE", "1.5", "less than 1"),
        ("TICKETFLOW_EMBEDDING_PRECISION", "fp16", "'int8' or 'fp32'"),
        ("TICKETFLOW_EMBEDDING_MAX_TOKENS", "-1", "greater than or equal to 0"),
        ("TICKETFLOW_PROFILE", "laptop", "'local' or 'cluster'"),
        ("TICKETFLOW_MASK_PERSONAL_DATA", "maybe", "valid boolean"),
        ("TICKETFLOW_NEIGHBOUR_KS", "5,0", "greater than or equal to 1"),
        ("TICKETFLOW_SGD_ALPHAS", "[1e-4,", "Value error"),
        ("TICKETFLOW_CV_FOLDS", "1", "greater than or equal to 2"),
        ("TICKETFLOW_LOG_RETENTION_DAYS", "0", "greater than or equal to 1"),
        ("TICKETFLOW_TUNING_TRIALS", "0", "greater than or equal to 1"),
        ("TICKETFLOW_TUNING_MAX_SECONDS", "-5", "greater than or equal to 0"),
    ],
)
def test_a_bad_variable_is_a_validation_error_naming_it(
    variable: str, text: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(ValidationError, match=message) as raised:
        TicketflowConfig.from_env()
    assert raised.value.title == "TicketflowConfig"
    [error] = raised.value.errors()
    assert error["loc"][0] == variable  # the variable, not the field: what the user set
    assert variable in str(raised.value)


def test_a_bad_override_names_the_field() -> None:
    with pytest.raises(ValidationError, match="valid number") as raised:
        TicketflowConfig.from_env(test_size="a fifth")
    assert raised.value.errors()[0]["loc"] == ("test_size",)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TicketflowConfig.from_env(test_sise=0.3)  # a typo is refused, not ignored
    with pytest.raises(ValidationError, match="greater than 0"):
        TicketflowConfig(sgd_alphas=(0.0,))
    with pytest.raises(ValidationError, match="linear_stack"):
        TicketflowConfig(classifier_forms=("stack", "forest"))
    assert TicketflowConfig().classifier_forms == FORMS  # every form the classifier knows competes by default


def test_a_bad_port_is_left_to_the_command_that_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "tcp://10.0.0.1:8080")  # what Kubernetes' service links can inject
    assert TicketflowConfig.from_env().port == "tcp://10.0.0.1:8080"  # `ticketflow serve` refuses it, not this


# --- frozen, params, secrets ----------------------------------------------------------------------------------


def test_frozen() -> None:
    cfg = TicketflowConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        TicketflowConfig.from_env().home = "elsewhere"  # type: ignore[misc]
    assert hash(cfg) == hash(TicketflowConfig())
    assert {cfg: "usable as a key"}[TicketflowConfig()] == "usable as a key"
    copy = cfg.model_copy(update={"cv_folds": 2})
    assert (copy.cv_folds, cfg.cv_folds) == (2, 5)


def test_as_params_are_flat_and_leave_the_token_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETFLOW_API_TOKEN", "s3cret")
    cfg = TicketflowConfig.from_env()
    params = cfg.as_params()
    assert set(params) == set(TicketflowConfig.model_fields) - {"api_token"}
    assert (params["sgd_alphas"], params["neighbour_ks"], params["text_columns"]) == ("1e-05,3e-05", "5,20,50", "")
    assert all(isinstance(value, str | int | float | bool) for value in params.values())
    assert "s3cret" not in repr(cfg) and "s3cret" not in json.dumps(params)
    assert cfg.api_token is not None and cfg.api_token.get_secret_value() == "s3cret"


# --- handing settings to child processes ----------------------------------------------------------------------


def child_settings(env: dict[str, str] | None = None) -> dict:
    code = "from ticketflow.components.config import TicketflowConfig as C; print(C.from_env().model_dump_json())"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_environment_with_hands_settings_to_a_child() -> None:
    env = environment_with(api_token="s3cret", text_columns=("subject", "body"), mask_personal_data=False)
    assert env["TICKETFLOW_API_TOKEN"] == "s3cret"  # the value itself, not pydantic's mask
    assert {k: v for k, v in env.items() if not k.startswith("TICKETFLOW_")} == {
        k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")
    }
    assert "TICKETFLOW_API_TOKEN" not in os.environ  # only the copy has it
    child = child_settings(env)
    assert (child["text_columns"], child["mask_personal_data"]) == (["subject", "body"], False)
    with pytest.raises(ValidationError):
        environment_with(seed="not a number")  # fails here, not in the child


def test_export_to_environment_reaches_this_process_and_later_children(tmp_path: Path) -> None:
    export_to_environment(home=str(tmp_path), seed=7)  # the autouse fixture restores the variables afterwards
    assert (os.environ["TICKETFLOW_HOME"], os.environ["TICKETFLOW_SEED"]) == (str(tmp_path), "7")
    assert TicketflowConfig.from_env().home == str(tmp_path)
    assert (child_settings()["home"], child_settings()["seed"]) == (str(tmp_path), 7)


# --- the one reader -------------------------------------------------------------------------------------------

PRODUCT = ("components", "monitoring", "serving", "pipelines")
READER = "components/config.py"
ENV_ATTRIBUTES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
# Files that still touch the environment while their owners split them; empty this list when they are done.
KNOWN_OFFENDERS: list[str] = []


def environment_uses(source: str) -> list[tuple[int, str]]:
    """Line and text of every use of `os.environ`, `os.getenv` and the like (reads and writes) in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ENV_ATTRIBUTES:
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in ENV_ATTRIBUTES]
    return sorted(found)


def test_the_scanner_sees_every_form() -> None:
    source = (
        "import os\nfrom os import environ, getenv as g\n"
        "a = os.environ.get('A')\nb = os.getenv('B')\nc = environ.get('C')\nos.environ['D'] = '1'\n"
        "e = {**os.environ}\n"
    )
    assert [line for line, _ in environment_uses(source)] == [2, 2, 3, 4, 6, 7]
    assert environment_uses((ROOT / READER).read_text(encoding="utf-8"))  # it does find the real reader


def test_only_config_touches_the_environment() -> None:
    uses: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            found = environment_uses(path.read_text(encoding="utf-8"))
            if relative != READER and found:
                uses[relative] = [f"{relative}:{line}: {text}" for line, text in found]
    unexpected = [use for file, found in uses.items() if file not in KNOWN_OFFENDERS for use in found]
    assert unexpected == [], "read settings through TicketflowConfig.from_env() (components/config.py)"
    stale = [file for file in KNOWN_OFFENDERS if file not in uses]
    assert stale == [], "these no longer touch the environment: remove them from KNOWN_OFFENDERS"


def test_the_cluster_profile_needs_a_database_url_for_the_prediction_log() -> None:
    cluster = TicketflowConfig(profile="cluster")
    with pytest.raises(ValueError, match="TICKETFLOW_PREDICTION_LOG"):
        cluster.prediction_log  # noqa: B018  # a file in one pod would be a log no other pod sees
    url = "postgresql+psycopg://ticketflow:pw@postgres:5432/ticketflow"
    assert TicketflowConfig(profile="cluster", prediction_log_uri=url).prediction_log == url
