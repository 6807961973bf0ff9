"""The Markdown a registration writes into MLflow's descriptions, without MLflow: figures, classes, the gate."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ticketflow.components.evaluate import Evaluation, score_target
from ticketflow.components.gate import decide
from ticketflow.components.register import CLASSES_SHOWN, figures_table, version_description


def test_figures_table_writes_each_target_and_marks_figures_a_run_did_not_log():
    metrics = {"category.macro_f1": 0.91234, "category.accuracy": 0.9, "category.routed_precision": 0.97}
    metrics |= {"category.routed_coverage": 0.8125, "priority.macro_f1": 0.5, "priority.accuracy": 0.6}
    lines = figures_table(metrics, ["category", "priority"]).splitlines()
    assert lines[0] == "| target | macro-F1 | accuracy | routed precision | coverage |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| category | 0.912 | 0.900 | 0.970 | 81.2% |"
    assert lines[3] == "| priority | 0.500 | 0.600 | – | – |"  # a run from before routing


def test_version_description_says_what_it_predicts_from_which_data_and_what_the_gate_did():
    y_true = np.array(["a", "b", "a", "b"])
    evaluation = Evaluation(
        {"queue": score_target("queue", y_true, np.array(["a", "b", "b", "b"]), [0.9] * 4, 0.5, 0.9)}
    )
    classes = [f"q{i:02d}" for i in range(CLASSES_SHOWN + 3)]
    model = SimpleNamespace(
        label_sets={"queue": classes}, targets=("queue",), mapping=SimpleNamespace(text_columns=("subject", "body"))
    )
    fingerprint = {"rows": 40, "test_rows": 4, "content_sha256": "0123456789abcdef" * 4}
    rejected = decide(0.5, {"queue": classes}, "3", {"queue": classes}, 0.8)
    text = version_description(model, evaluation, fingerprint, rejected, source="tickets.csv")
    assert f"Predicts `queue` ({', '.join(classes[:CLASSES_SHOWN])} (+3 more)) from a ticket's subject, body." in text
    assert (
        "Data: 40 tickets (4 of them held out as the test split), dataset `0123456789ab`, source `tickets.csv`." in text
    )
    t = evaluation.targets["queue"]
    assert f"| queue | {t.macro_f1:.3f} | 0.750 | {t.routing.precision:.3f} | 100.0% |" in text
    assert "Quality gate: **not promoted**: mean macro-F1 0.5000 does not beat champion v3 (0.8000)" in text
