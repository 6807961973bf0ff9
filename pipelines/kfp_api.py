"""Talking to a cluster's Kubeflow Pipelines API: what `make submit` and `make schedule` share.

Both take the same options (`add_cluster_arguments`) and run the same way (`run_on_cluster`):

- `--host`: the API's address, e.g. `http://localhost:8080` through
  `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` (the dashboard proxies the API, and run links
  point at the same address);
- `--namespace`: where the runs go. A multi-user Kubeflow needs the user's profile namespace
  (`kubeflow-user-example-com`); single-user KFP (standalone) ignores it;
- `--token-file`: a bearer token for a multi-user Kubeflow, e.g. `kubectl -n <namespace> create token
  default-editor`, read from a file or, with `-`, from standard input: never from the command line, where `ps`
  shows it to every user of the machine (`make` pipes `KFP_TOKEN` in);
- `--service-account`: the Kubernetes service account of the pods the command starts (empty: KFP's default).

`connect` asks the address once, with a short timeout, before it builds the `kfp.Client`: the client's first call
retries five times 5 s apart, and an address that drops packets would hang the command for minutes. Nothing
answering is a `KfpUnreachableError` naming the address and how to open a port-forward. `run_on_cluster` checks
the request locally first, then connects and sends it, and turns any error of `cluster_errors()` into one line on
standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

DEFAULT_NAMESPACE = "kubeflow"  # kfp.Client's default too: single-user KFP's namespace
ANSWER_TIMEOUT_SECONDS = 5.0
HEALTHZ_PATH = "/apis/v2beta1/healthz"
PORT_FORWARD_HINT = "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80, then --host http://localhost:8080"


class KfpUnreachableError(RuntimeError):
    """No Kubeflow Pipelines API answered at the given address in time."""


@dataclass(frozen=True)
class KfpConnection:
    """Where a cluster's KFP API is and who we are to it.

    Attributes:
        host: The API's base URL, e.g. `http://localhost:8080`.
        namespace: Kubeflow namespace of the runs (multi-user: the profile's; single-user KFP ignores it).
        token: Bearer token (multi-user Kubeflow); None sends none.
    """

    host: str
    namespace: str = DEFAULT_NAMESPACE
    token: str | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """`host` without a trailing slash (the dashboard's address as well as the API's)."""
        return self.host.rstrip("/")

    def run_url(self, run_id: str) -> str:
        """The dashboard page of a run."""
        return f"{self.base_url}/#/runs/details/{run_id}"

    def recurring_run_url(self, recurring_run_id: str) -> str:
        """The dashboard page of a recurring run."""
        return f"{self.base_url}/#/recurringrun/details/{recurring_run_id}"


def check_answers(host: str, timeout: float = ANSWER_TIMEOUT_SECONDS) -> None:
    """Asks the KFP API's health endpoint once; any HTTP answer will do (an auth proxy's 401/403 included).

    Args:
        host: The API's base URL.
        timeout: Seconds to wait for the connection and the answer.

    Raises:
        KfpUnreachableError: `host` is not an http(s) URL, or nothing answered there within `timeout`.
    """
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KfpUnreachableError(f"the KFP host {host!r} is not an http(s) URL, e.g. http://localhost:8080")
    url = host.rstrip("/") + HEALTHZ_PATH
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as kfp.Client connects: no env proxies
    try:
        # http(s) only (checked above), a fixed path, nothing read but the status.
        with direct.open(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # the address answers; kfp.Client reports what it says
    except (urllib.error.URLError, OSError) as exc:  # refused, unknown host, TLS, timeout (TimeoutError is OSError)
        reason = getattr(exc, "reason", None) or exc or type(exc).__name__
        raise KfpUnreachableError(
            f"no Kubeflow Pipelines API answers at {host} within {timeout:g} s ({reason}). "
            f"Is a port-forward running? {PORT_FORWARD_HINT}"
        ) from exc


def connect(connection: KfpConnection, timeout: float = ANSWER_TIMEOUT_SECONDS):
    """A `kfp.Client` for `connection`, after `check_answers`.

    Args:
        connection: Address, namespace and token.
        timeout: Seconds the first check waits.

    Returns:
        The client.

    Raises:
        KfpUnreachableError: Nothing answers at `connection.host`.
    """
    check_answers(connection.host, timeout)
    import kfp  # imported here: heavy, and only a command that talks to a cluster needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later": we need 2.x
        return kfp.Client(host=connection.host, namespace=connection.namespace, existing_token=connection.token)


def read_token(source: str | None) -> str | None:
    """The bearer token from a file, or from standard input for `-`; None without a source.

    Raises:
        ValueError: The source is empty.
    """
    if not source:
        return None
    token = (sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")).strip()
    if not token:
        raise ValueError(f"the token {'on standard input' if source == '-' else f'file {source}'} is empty")
    return token


def cluster_errors() -> tuple[type[Exception], ...]:
    """What a command that talks to a cluster reports as an error (one line, exit status 1) instead of a trace."""
    from kfp_server_api.exceptions import ApiException

    return (KfpUnreachableError, ApiException, ValueError, OSError)


def describe_error(exc: Exception, host: str) -> str:
    """One line for an error of `cluster_errors()`: the API's status and message rather than its headers."""
    status = getattr(exc, "status", None)
    if status is None:
        return str(exc)
    body = getattr(exc, "body", None) or ""
    try:
        message = json.loads(body).get("message") or body
    except (ValueError, AttributeError):
        message = body
    hint = ""
    if status in (401, 403):
        hint = " (a multi-user Kubeflow needs the profile's namespace and a token: KFP_NAMESPACE=…, KFP_TOKEN=…)"
    return f"the Kubeflow Pipelines API at {host} answered {status} {getattr(exc, 'reason', '')}: {message}{hint}"


def add_cluster_arguments(parser: argparse.ArgumentParser, pods: str) -> None:
    """Adds `--host`, `--namespace`, `--token-file` and `--service-account` to a command's parser.

    Args:
        parser: The command's parser.
        pods: Whose pods the service account runs, for the help text: "the run's pods", "the runs' pods".
    """
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="Kubeflow namespace of the runs: a multi-user install's profile namespace (default: %(default)s)",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding a bearer token for a multi-user Kubeflow; '-' reads it from standard input",
    )
    parser.add_argument("--service-account", default="", help=f"service account of {pods} (default: KFP's)")


def connection_from(args: argparse.Namespace) -> KfpConnection:
    """The connection the parsed `add_cluster_arguments` options describe (reads the token)."""
    return KfpConnection(host=args.host, namespace=args.namespace, token=read_token(args.token_file))


def run_on_cluster(
    args: argparse.Namespace, validate: Callable[[], None], send: Callable[[Any], T]
) -> tuple[KfpConnection, T] | None:
    """Checks a request locally, then connects and sends it; an error is one line on standard error.

    Args:
        args: The parsed `add_cluster_arguments` options.
        validate: Raises ValueError for a request the cluster would refuse, before the token is read or any
            request goes out.
        send: Sends the request with a connected `kfp.Client` and returns what the command reports.

    Returns:
        The connection (for the dashboard's links) and what `send` returned; None after an error of
        `cluster_errors()`, which it prints as `error: …`.
    """
    try:
        validate()
        connection = connection_from(args)
        return connection, send(connect(connection))
    except cluster_errors() as exc:
        print(f"error: {describe_error(exc, args.host)}", file=sys.stderr)
        return None
