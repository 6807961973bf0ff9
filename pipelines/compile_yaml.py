"""Compiles a pipeline function to the YAML a user uploads in the Kubeflow Pipelines dashboard."""

from __future__ import annotations

from kfp import compiler


def compile_to(pipeline_func, path: str) -> str:
    """Compiles a `@dsl.pipeline` function to an IR YAML file.

    Args:
        pipeline_func: The pipeline (e.g. `ticketflow.pipelines.training.training_pipeline`).
        path: Output file.

    Returns:
        The path written.
    """
    compiler.Compiler().compile(pipeline_func, package_path=path)
    return path
