"""The drift reference: the served model (the registry's champion) with the training snapshot logged beside it.

The drift check compares live traffic with that snapshot; retraining starts from the champion's data. The
champion alias itself (who holds it, how it moves) belongs to the training side, in `ticketflow.components`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Champion:
    """The served model with its reference snapshot.

    Attributes:
        version: The registered model version behind the champion alias.
        model: The `ticketflow.components.model.TicketModel` (imported lazily: heavy).
        reference: The training tickets logged with the model (the drift reference).
        run_id: The MLflow run that trained it.
    """

    version: str
    model: object
    reference: pd.DataFrame
    run_id: str


def load_champion_reference(cfg) -> Champion:
    """The champion model and the training reference logged with it.

    Args:
        cfg: Configuration (MLflow tracking URI, registered model name, champion alias).

    Returns:
        The champion with its reference snapshot.

    Raises:
        LookupError: There is no champion yet.
    """
    import mlflow
    from mlflow import MlflowClient

    from ticketflow.components.champion import load_champion

    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = MlflowClient()
    champion = load_champion(client, cfg.registered_model_name, cfg.champion_alias)
    if champion is None:
        raise LookupError(f"no {cfg.champion_alias} for {cfg.registered_model_name}: train first (make run)")
    version, model = champion
    details = client.get_model_version(cfg.registered_model_name, version)
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(details.tags["reference_uri"]))
    return Champion(version, model, reference, details.run_id)
