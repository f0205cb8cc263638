"""Prefect flows over the DVC pipeline (see docs/orchestration.md).

- ``flows.pipeline``: every DVC stage as a task run, in ``dvc repro`` order.
- ``flows.sweep``: grids / lists of param overrides as queued DVC experiments.
- ``flows.evaluate``: score the registered ``champion`` (or a version) on a split.
- ``flows.infer_shards``: inference shards as tasks or as deployment runs on a work pool.

Deployments and schedules live in ``prefect.yaml``, never in these modules.
"""
