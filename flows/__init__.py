"""Prefect flows: ingest, reconstruct, train, denoise, and the whole pipeline."""
