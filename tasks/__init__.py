"""The units of work: plain typed functions. Prefect wrappers live in flows/."""
