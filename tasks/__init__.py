"""Prefect tasks: thin wrappers that cut the work into chunks and call the core."""
