"""Prefect flows and the `prmforge` command line."""
