"""Audit: the training tickets whose given label the model most confidently disputes (confident learning).

The rule is Northcutt, Jiang and Chuang's (2021, "Confident learning: estimating uncertainty in dataset labels"),
written out here rather than taken from `cleanlab`, which is AGPL-3.0. It reads out-of-fold probabilities, the
model's view of tickets it did not learn from (`NeighbourStackClassifier.oof_proba_`):

- each class j gets a threshold t_j, the mean probability of j over the tickets labelled j (its average
  self-confidence): how sure the model usually is of a ticket that truly is j;
- a ticket's confident classes are those with p_j >= t_j; its suggested label is the most probable of them;
- it is a label issue when the suggested label differs from the given one (a ticket with no confident class is
  left alone: the model has no firm view of it).

The train step writes the issues of every target as an artifact, the evaluate step shows the top of the list in
the HTML report, the register step logs it to the MLflow run, and `ticketflow review-queue --label-issues` lists
the champion's for agents, whose corrections (`ticketflow feedback`) reach the next training.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketflow.components.ingest import TICKET_ID
from ticketflow.components.prepare import TEXT
from ticketflow.components.privacy import snippet

log = logging.getLogger(__name__)

# Columns of `find_label_issues`' answer, in order.
ISSUE_COLUMNS = (
    "position",
    "given_label",
    "suggested_label",
    "given_label_probability",
    "suggested_label_probability",
    "score",
)
# Columns of the label-issues artifact (`label_issues_frame`), in order.
ARTIFACT_COLUMNS = (
    TICKET_ID,
    TEXT,
    "target",
    "given_label",
    "suggested_label",
    "confidence",
    "given_label_probability",
    "rank",
)
# Where the register step logs the artifact in the MLflow run, and where the CLI downloads it from.
ARTIFACT_DIR = "label_issues"
ARTIFACT_FILE = "label_issues.csv"
REPORT_TOP = 20  # issues per target shown in the HTML report
REPORT_TEXT_CHARS = 160  # a ticket's text is shortened to this in the report


class LabelIssuesUnavailableError(LookupError, RuntimeError):
    """There is no champion, or its run has no label issues (it was registered before the audit existed).

    A `LookupError` like the champion's other look-ups; a `RuntimeError` too, so the CLI's one `error:` line shows it.
    """


def find_label_issues(given: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Tickets whose given label the model confidently disputes, most disputed first (confident learning).

    Args:
        given: Each ticket's given label; every one must be in `classes`.
        probabilities: Out-of-fold class probabilities, shape (tickets, classes), columns in the order of `classes`.
        classes: The class names.

    Returns:
        One row per issue, columns `ISSUE_COLUMNS`: the ticket's row `position` in `given`, `given_label`,
        `suggested_label`, the probabilities of both (0–1) and `score`, how strongly the model disputes the label:
        1 − p(given), 0–1. Sorted by score, highest first (ties: the larger margin p(suggested) − p(given), then
        position).

    Raises:
        ValueError: The shapes disagree, or a given label is not a class.
    """
    classes = np.asarray([str(c) for c in classes], dtype=object)
    given = np.asarray([str(g) for g in given], dtype=object)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape != (len(given), len(classes)):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}; expected ({len(given)} tickets, {len(classes)} classes)"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({g for g in given if g not in lookup})
    if unknown:
        raise ValueError(f"given labels {unknown[:5]} are not among the classes {list(classes)}")
    given_index = np.array([lookup[g] for g in given], dtype=int)
    rows = np.arange(len(given))
    self_confidence = probabilities[rows, given_index]
    # A class no ticket carries has no average self-confidence: no ticket is confidently of it.
    counts = np.bincount(given_index, minlength=len(classes))
    sums = np.bincount(given_index, weights=self_confidence, minlength=len(classes))
    thresholds = np.divide(sums, counts, out=np.full(len(classes), np.inf), where=counts > 0)
    confident = probabilities >= thresholds
    suggested_index = np.where(confident, probabilities, -np.inf).argmax(axis=1)
    issue = confident.any(axis=1) & (suggested_index != given_index)
    positions = rows[issue]
    given_probability = self_confidence[issue]
    suggested_probability = probabilities[positions, suggested_index[issue]]
    # Ranked by self-confidence (the given label's probability), as cleanlab ranks by default, rather than by the
    # margin p(suggested) − p(given): both put every flipped label the rule finds in the top 40 of the bundled
    # sample (20 categories flipped, seeds 0–2), and self-confidence put more of them in the top 20 (8, 10, 13 against
    # 8, 9, 11). The margin breaks ties.
    frame = pd.DataFrame(
        {
            "position": positions,
            "given_label": given[issue],
            "suggested_label": classes[suggested_index[issue]],
            "given_label_probability": given_probability,
            "suggested_label_probability": suggested_probability,
            "score": 1.0 - given_probability,
        },
        columns=list(ISSUE_COLUMNS),
    )
    frame["_margin"] = suggested_probability - given_probability
    frame = frame.sort_values(["score", "_margin", "position"], ascending=[False, False, True], kind="stable")
    return frame.drop(columns="_margin").reset_index(drop=True)


def label_issues_frame(train: pd.DataFrame, classifiers: Mapping[str, Any]) -> pd.DataFrame:
    """The label-issues artifact: every target's issues among the training tickets.

    Args:
        train: The training split the classifiers were fitted on, row-aligned with their out-of-fold
            probabilities (`ticket_id`, `text` and one column per target).
        classifiers: Target -> fitted classifier; those without `oof_proba_` (trained before the audit, or
            unpickled: it is not saved) are skipped.

    Returns:
        Columns `ARTIFACT_COLUMNS`: `confidence` is the probability of the suggested label, `rank` the ticket's
        place in its target's list (1: most disputed). Sorted by target, then rank.

    Raises:
        ValueError: A classifier's probabilities do not have one row per training ticket.
    """
    frames = []
    for target, classifier in classifiers.items():
        probabilities = getattr(classifier, "oof_proba_", None)
        if probabilities is None:
            log.info("audit: %s has no out-of-fold probabilities, not audited", target)
            continue
        if len(probabilities) != len(train):
            raise ValueError(f"{target}: {len(probabilities)} out-of-fold rows for {len(train)} training tickets")
        issues = find_label_issues(train[target].astype(str).to_numpy(), probabilities, classifier.classes_)
        rows = train.iloc[issues["position"].to_numpy()]
        frames.append(
            pd.DataFrame(
                {
                    TICKET_ID: rows[TICKET_ID].astype(str).to_numpy(),
                    TEXT: rows[TEXT].astype(str).to_numpy(),
                    "target": target,
                    "given_label": issues["given_label"].to_numpy(),
                    "suggested_label": issues["suggested_label"].to_numpy(),
                    "confidence": issues["suggested_label_probability"].round(4).to_numpy(),
                    "given_label_probability": issues["given_label_probability"].round(4).to_numpy(),
                    "rank": np.arange(1, len(issues) + 1),
                }
            )
        )
        log.info("audit: %s: %d of %d training tickets flagged", target, len(issues), len(train))
    if not frames:
        return pd.DataFrame(columns=list(ARTIFACT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(ARTIFACT_COLUMNS)]


def issue_counts(issues: pd.DataFrame, targets: Sequence[str]) -> dict[str, int]:
    """Flagged training tickets per target, 0 included.

    Args:
        issues: The label-issues artifact (`label_issues_frame`).
        targets: The model's targets.

    Returns:
        Target -> number flagged.
    """
    return {target: int((issues["target"] == target).sum()) for target in targets}


def write_label_issues(issues: pd.DataFrame, path: str | Path) -> None:
    """Writes the artifact as CSV (MLflow's UI previews it), no index."""
    issues.to_csv(path, index=False)


def read_label_issues(path: str | Path) -> pd.DataFrame:
    """Reads the artifact back: labels and ids as text ("NA" or "None" stay labels), numbers as numbers.

    Raises:
        ValueError: The file lacks a column of `ARTIFACT_COLUMNS`.
    """
    text_columns = {TICKET_ID: str, TEXT: str, "target": str, "given_label": str, "suggested_label": str}
    issues = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    missing = [c for c in ARTIFACT_COLUMNS if c not in issues.columns]
    if missing:
        raise ValueError(f"{path} is not a label-issues file: it lacks the columns {missing}")
    for column in ("confidence", "given_label_probability"):
        issues[column] = pd.to_numeric(issues[column]).astype(float)
    issues["rank"] = pd.to_numeric(issues["rank"]).astype(int)
    return issues[list(ARTIFACT_COLUMNS)]


def read_label_issues_if_any(path: str | Path) -> pd.DataFrame | None:
    """The artifact at `path`, or None when `path` is empty or no file (a step given none, e.g. a model from before).

    Raises:
        ValueError: The file is not a label-issues file.
    """
    return read_label_issues(path) if path and Path(path).is_file() else None


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, personal data masked (training text is quoted to more people)."""
    return snippet(str(text), limit)


def label_issues_html(issues: pd.DataFrame, target: str, top: int = REPORT_TOP) -> str:
    """The report's section "Probably mislabelled training tickets" for one target.

    Args:
        issues: The label-issues artifact (`label_issues_frame`).
        target: The target shown.
        top: Issues listed, most disputed first.

    Returns:
        An HTML fragment: the total flagged and a table of the top issues (shortened text, given label,
        suggested label, confidence).
    """
    esc = html.escape
    mine = issues[issues["target"] == target].sort_values("rank", kind="stable")
    parts = [
        "<h3>Probably mislabelled training tickets</h3>",
        f"<p>{len(mine)} training tickets flagged: the model, scoring them out of fold, confidently suggests another "
        "label (confident learning). Most disputed first"
        + (f", the top {top}" if len(mine) > top else "")
        + ". Agents list and correct them with <code>ticketflow review-queue --label-issues</code>.</p>",
    ]
    if mine.empty:
        return "".join(parts)
    rows = "".join(
        f"<tr><td>{esc(shorten(r[TEXT], REPORT_TEXT_CHARS))}</td><td>{esc(str(r['given_label']))}</td>"
        f"<td>{esc(str(r['suggested_label']))}</td><td>{float(r['confidence']):.3f}</td></tr>"
        for r in mine.head(top).to_dict("records")
    )
    parts.append(
        "<table class='issues'><tr><th>text</th><th>given label</th><th>suggested label</th><th>confidence</th></tr>"
        f"{rows}</table>"
    )
    return "".join(parts)


@dataclass(frozen=True)
class ChampionLabelIssues:
    """The label issues of the champion's training run.

    Attributes:
        version: The champion's registered model version.
        run_id: Its MLflow training run.
        registered_at: When the version was registered (UTC): when its out-of-fold predictions were made, give or
            take the run's length.
        issues: The label-issues artifact of that run.
        counts: Target -> training tickets flagged, for every target audited (0 included; the run's metrics).
    """

    version: str
    run_id: str
    registered_at: datetime
    issues: pd.DataFrame
    counts: dict[str, int]

    def ranked(self, target: str | None = None) -> pd.DataFrame:
        """The issues most disputed first across targets: lowest probability of the given label first.

        Args:
            target: Only this target's issues; None keeps every target.

        Returns:
            The artifact's rows, reordered, index reset.

        Raises:
            ValueError: `target` is not a target of the champion.
        """
        issues = self.issues
        if target is not None:
            if target not in self.counts:
                raise ValueError(
                    f"the champion v{self.version} has no target {target!r}; its targets: "
                    f"{', '.join(sorted(self.counts)) or 'none'}"
                )
            issues = issues[issues["target"] == target]
        # Each target's own order (`rank`) is kept; between targets, the rounded probabilities of the given labels.
        order = np.lexsort(
            (issues["target"].to_numpy(), issues["rank"].to_numpy(), issues["given_label_probability"].to_numpy())
        )
        return issues.iloc[order].reset_index(drop=True)

    def feedback_snapshots(self) -> dict[str, dict[str, Any]]:
        """Per flagged ticket, what a correction of it keeps as the prediction it corrects.

        Returns:
            Ticket id -> the fields of a prediction-log record `FeedbackStore.record` reads: `text`, `labels`
            (flagged target -> the suggested label), `confidences` (-> its probability), `model_version` and
            `timestamp` (the version's registration).
        """
        snapshots: dict[str, dict[str, Any]] = {}
        for row in self.issues.to_dict("records"):
            snapshot = snapshots.setdefault(
                row[TICKET_ID],
                {
                    "text": row[TEXT],
                    "labels": {},
                    "confidences": {},
                    "model_version": self.version,
                    "timestamp": self.registered_at,
                },
            )
            snapshot["labels"][row["target"]] = row["suggested_label"]
            snapshot["confidences"][row["target"]] = float(row["confidence"])
        return snapshots


def champion_label_issues(cfg) -> ChampionLabelIssues:
    """Downloads the label issues logged with the champion's training run.

    Args:
        cfg: Configuration (tracking URI, registered model name, champion alias).

    Returns:
        The champion's version, run and label issues.

    Raises:
        LabelIssuesUnavailableError: There is no champion, or its run logged no label issues.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = cfg.tracking_uri
    no_champion = LabelIssuesUnavailableError(
        f"no {cfg.champion_alias} for {cfg.registered_model_name} in {uri}: train first (ticketflow run)"
    )
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise no_champion  # asking MLflow would create (and migrate) an empty store just to find nothing
    client = MlflowClient(tracking_uri=uri)
    try:
        version = client.get_model_version_by_alias(cfg.registered_model_name, cfg.champion_alias)
    except MlflowException as exc:
        raise no_champion from exc
    try:
        # MLflow draws a download progress bar on stderr even when it is no terminal: the CLI's stderr is for errors.
        with contextlib.redirect_stderr(io.StringIO()):
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=f"{ARTIFACT_DIR}/{ARTIFACT_FILE}", tracking_uri=uri
            )
    except (MlflowException, OSError) as exc:
        raise LabelIssuesUnavailableError(
            f"the {cfg.champion_alias} (v{version.version}, run {version.run_id}) has no label issues: it was "
            "registered before the label audit existed; train again (ticketflow run) to audit its labels"
        ) from exc
    registered_at = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    metrics = client.get_run(version.run_id).data.metrics
    counts = {k.removesuffix(".label_issues"): int(v) for k, v in metrics.items() if k.endswith(".label_issues")}
    return ChampionLabelIssues(str(version.version), version.run_id, registered_at, read_label_issues(local), counts)
