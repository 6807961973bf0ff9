"""The Makefile: arguments reach the installed `ticketflow` command intact, `clean` spares the state, `reset` asks.

Most checks dry-run make (`make -n`: nothing runs). `clean` and `reset` run for real, on a copy of the Makefile in
a temporary folder, so the working tree's own state and caches are never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from ticketflow.pipelines.image import overlay_image, set_overlay_image

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

CLI = ".venv/bin/ticketflow"
OVERLAY = "manifests/overlays/minikube"


def dry_run(*make_args: str) -> str:
    """What `make -n` would run in the repository."""
    return subprocess.run(
        ["make", "-n", *make_args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def cli_args(*make_args: str, subcommand: str | None = None) -> list[str]:
    """The argument list of the installed `ticketflow` command a make target would run (the last such line)."""
    subcommand = subcommand or make_args[0]
    lines = [shlex.split(line) for line in dry_run(*make_args).splitlines() if line.startswith(CLI)]
    matching = [args for args in lines if args[1:2] == [subcommand]]
    assert matching, f"make -n {' '.join(make_args)} runs no `{CLI} {subcommand}`"
    return matching[-1]


def make(folder: Path, *make_args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs make in `folder` (which holds a copy of the Makefile) and returns the finished process."""
    return subprocess.run(["make", "-C", str(folder), *make_args], text=True, timeout=60, check=False, **kwargs)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A temporary folder with the Makefile and a state folder worth keeping."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    state = tmp_path / ".ticketflow"
    (state / "runs" / "__pycache__").mkdir(parents=True)
    (state / "mlflow.db").write_text("models", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (("run", "DATA=exports/my tickets.csv"), ["--data", "exports/my tickets.csv"]),
        (
            ("predict", "DATA=new tickets.csv", "OUT=scored tickets.csv"),
            ["--data", "new tickets.csv", "--out", "scored tickets.csv"],
        ),
    ],
)
def test_paths_with_spaces_stay_one_argument(make_args: tuple[str, ...], expected: list[str]) -> None:
    args = cli_args(*make_args)
    start = args.index(expected[0])
    assert args[start : start + len(expected)] == expected


def test_run_without_data_passes_no_data_flag() -> None:
    assert "--data" not in cli_args("run")


def test_serve_runs_the_serve_subcommand_with_host_and_port() -> None:
    assert cli_args("serve", "HOST=0.0.0.0", "PORT=9090") == [CLI, "serve", "--host", "0.0.0.0", "--port", "9090"]
    first = cli_args("serve", subcommand="champion")  # trains first when there is no champion
    assert first[:2] == [CLI, "champion"]
    assert first[first.index("||") :][-3:] == [CLI, "run;", "}"]


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [(("promote", "VERSION=3"), [CLI, "promote", "--version", "3"]), (("rollback",), [CLI, "rollback"])],
)
def test_champion_moves_use_the_installed_command(make_args: tuple[str, ...], expected: list[str]) -> None:
    assert cli_args(*make_args) == expected


def test_no_target_runs_the_cli_module_directly() -> None:
    assert "ticketflow.pipelines.cli" not in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_install_uses_the_locks_with_plain_pip() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = text[text.index("$(VENV)/.installed:") : text.index("\ninstall:")]
    assert "uv " not in recipe  # uv only regenerates the locks (make lock)
    assert recipe.index("torch==2.13.0") < recipe.index("-r requirements.txt -r requirements-dev.txt")
    assert recipe.index("-r requirements.txt") < recipe.index("--no-deps --no-build-isolation -e .")
    assert recipe.index("-e .") < recipe.index("$(PIP) check")


def test_clean_dry_run_never_names_the_state_folder() -> None:
    assert ".ticketflow" not in dry_run("clean")


def test_clean_removes_build_outputs_and_keeps_the_state(project_copy: Path) -> None:
    outputs = ["build/lib/x.py", "dist/t.whl", "ticketflow.egg-info/PKG-INFO", "local_outputs/run/a", ".ruff_cache/x"]
    outputs += [".pytest_cache/v", "components/__pycache__/m.pyc", "tests/serving/__pycache__/t.pyc"]
    kept = ["components/m.py", ".venv/lib/__pycache__/v.pyc"]
    for name in outputs + kept:
        (project_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (project_copy / name).write_text("x", encoding="utf-8")
    assert make(project_copy, "clean", capture_output=True).returncode == 0
    assert [name for name in outputs if (project_copy / name).exists()] == []
    assert not (project_copy / "build").exists()
    assert not (project_copy / "components" / "__pycache__").exists()
    assert all((project_copy / name).exists() for name in kept)
    assert (project_copy / ".ticketflow" / "mlflow.db").read_text(encoding="utf-8") == "models"
    assert (project_copy / ".ticketflow" / "runs" / "__pycache__").is_dir()


def test_reset_refuses_without_a_terminal_to_ask(project_copy: Path) -> None:
    result = make(project_copy, "reset", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode != 0
    assert "FORCE=1" in result.stderr
    assert (project_copy / ".ticketflow" / "mlflow.db").is_file()


def test_reset_with_force_deletes_the_state(project_copy: Path) -> None:
    result = make(project_copy, "reset", "FORCE=1", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert not (project_copy / ".ticketflow").exists()
    assert (project_copy / "Makefile").is_file()


@pytest.mark.parametrize(("answer", "deleted"), [("y", True), ("n", False), ("", False)])
def test_reset_asks_on_a_terminal(project_copy: Path, answer: str, deleted: bool) -> None:
    controller, terminal = os.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())  # the terminal keeps the line until `read` takes it
        result = make(project_copy, "reset", stdin=terminal, capture_output=True)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert "[y/N]" in result.stderr
    assert (project_copy / ".ticketflow").exists() is not deleted


def test_reset_without_state_has_nothing_to_do(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    result = make(tmp_path, "reset", stdin=subprocess.DEVNULL, capture_output=True)
    assert result.returncode == 0
    assert "nothing to reset" in result.stdout


# --- the one image, the cluster commands ----------------------------------------------------------------------------


def recipe_lines(*make_args: str) -> list[str]:
    """The lines `make -n` prints (a recursive $(MAKE) line runs, dry, and prints its own)."""
    return dry_run(*make_args).splitlines()


def test_image_builds_the_overlays_image_and_retags_nothing() -> None:
    lines = recipe_lines("image", "CONTAINER=docker")
    build = next(line for line in lines if " build -t " in line)
    assert build.split()[:4] == ["docker", "build", "-t", overlay_image(ROOT / OVERLAY)]
    assert not any("ticketflow.pipelines.image" in line for line in lines)


def test_smoke_containers_names_the_image_as_the_engine_lists_it_and_takes_pips_settings() -> None:
    recipe = dry_run("smoke-containers", "CONTAINER=podman", "PIP_CERT=/ca.pem", "SKIP_BUILD=1").replace("\\\n", " ")
    [line] = [line for line in recipe.splitlines() if "ticketflow.pipelines.smoke_containers" in line]
    assert '--engine "podman"' in line and '--image "localhost/ticketflow:dev"' in line
    assert '--pip-cert "/ca.pem"' in line and line.rstrip().endswith("--skip-build")


@pytest.mark.parametrize("target", ["image", "compile", "deploy"])
def test_another_image_retags_the_overlay_and_the_pipelines_together(target: str) -> None:
    image = "registry.example.com:5000/team/ticketflow:abc1234"
    lines = recipe_lines(target, f"IMAGE={image}")
    setter = [shlex.split(line) for line in lines if "ticketflow.pipelines.image" in line]
    assert setter == [[".venv/bin/python", "-m", "ticketflow.pipelines.image", "--overlay", OVERLAY, "set", image]]
    compiles = [shlex.split(line) for line in lines if "-m ticketflow.pipelines." in line and "image" not in line]
    assert [args[-1] for args in compiles] == ["ticketflow.pipelines.training", "ticketflow.pipelines.drift"]
    assert all(args[0] == f"TICKETFLOW_IMAGE={image}" for args in compiles)
    if target == "image":
        assert any(f"build -t {image} " in line for line in lines)


def test_the_makefile_reads_back_what_the_image_setter_writes(tmp_path: Path) -> None:
    # awk reads the overlay (make image needs no .venv); ticketflow.pipelines.image writes it.
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    overlay = tmp_path / OVERLAY
    shutil.copytree(ROOT / OVERLAY, overlay)
    digest = "sha256:" + "0123456789abcdef" * 4
    images = ["ticketflow:dev", "localhost/ticketflow:dev", "registry.example.com:5000/t/ticketflow:1.2"]
    for image in [*images, f"ghcr.io/ticketflow/ticketflow@{digest}"]:
        set_overlay_image(image, overlay)
        printed = make(tmp_path, "-n", "image", capture_output=True).stdout
        assert f"build -t {image} " in printed, printed
        assert "compile" not in printed


def test_cluster_options_reach_the_commands_and_the_token_stays_off_every_command_line() -> None:
    token = "eyJ-secret-token"
    options = ["KFP_HOST=http://localhost:8080", "KFP_NAMESPACE=kubeflow-user-example-com", f"KFP_TOKEN={token}"]
    options.append("KFP_SERVICE_ACCOUNT=default-editor")
    for target, module, extra in [
        ("schedule", "ticketflow.pipelines.schedule", ["CRON=0 0 */3 * * *"]),
        ("submit", "ticketflow.pipelines.submit", ["DATA=minio://mlpipeline/tickets/export.csv"]),
    ]:
        printed = dry_run(target, *options, *extra)
        assert token not in printed
        (line,) = [line for line in printed.splitlines() if f"-m {module}" in line]
        assert line.startswith("""printf '%s' "$KFP_TOKEN" | """)  # the shell expands it: no argv holds it
        args = shlex.split(line.split("| ", 1)[1])
        assert args[args.index("--host") + 1] == "http://localhost:8080"
        assert args[args.index("--namespace") + 1] == "kubeflow-user-example-com"
        assert args[args.index("--service-account") + 1] == "default-editor"
        assert args[args.index("--token-file") + 1] == "-"
        if target == "schedule":
            assert args[args.index("--cron") + 1] == "0 0 */3 * * *"
        else:
            assert args[args.index("--data") + 1] == "minio://mlpipeline/tickets/export.csv"
    args = shlex.split(
        next(
            line
            for line in dry_run("submit", "KFP_HOST=h", "DATA=s3://b/x.csv", "KFP_TOKEN_FILE=/run/t").splitlines()
            if "ticketflow.pipelines.submit" in line
        )
    )
    assert args[0] == ".venv/bin/python" and args[args.index("--token-file") + 1] == "/run/t"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_deploy_fails_in_seconds_when_no_cluster_answers(project_copy: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "me", "user": {"token": "x"}}],
                "contexts": [{"name": "minikube-stopped", "context": {"cluster": "gone", "user": "me"}}],
                "current-context": "minikube-stopped",
            }
        ),
        encoding="utf-8",
    )
    started = time.monotonic()
    result = make(project_copy, "deploy", capture_output=True, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    assert "no Kubernetes cluster answers at kubectl's context 'minikube-stopped'" in result.stderr
    assert "minikube start" in result.stderr and f"127.0.0.1:{port}" in result.stderr  # kubectl's own words too
    assert "apply" not in result.stdout
