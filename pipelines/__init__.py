"""Kubeflow Pipelines definitions of ticketflow, and the command line that runs them locally."""
