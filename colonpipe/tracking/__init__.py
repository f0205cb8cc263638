"""MLflow tracking for colonpipe (a leaf under the library): the store, parent/child stage runs,
lineage and one logger interface. Registration, promotion and serving live in :mod:`colonpipe.register`.

Typical use in a stage::

    from colonpipe.tracking import stage_run
    with stage_run("finetune", params=flatten(cfg, "finetune"), inputs=[data_dir]) as log:
        log.log_metrics({"train.loss": loss}, step=step)
"""

from colonpipe.tracking.logger import MlflowLogger, RunLogger
from colonpipe.tracking.runs import PARENT_ENV, pipeline_parent, stage_run
from colonpipe.tracking.store import experiment_name, get_client, get_experiment_id, tracking_uri

__all__ = [
    "MlflowLogger",
    "PARENT_ENV",
    "RunLogger",
    "experiment_name",
    "get_client",
    "get_experiment_id",
    "pipeline_parent",
    "stage_run",
    "tracking_uri",
]
