"""The trained model as a registered, servable artefact (the top library layer).

- :mod:`~colonpipe.register.rule`: the promotion rule (guarded metrics, floors, tolerances, NaN).
- :mod:`~colonpipe.register.registry`: the MLflow registry: versions, the ``champion`` alias, rollback.
- :mod:`~colonpipe.register.model_log`: logging the model as an MLflow pyfunc.
- :mod:`~colonpipe.register.pyfunc`, :mod:`~colonpipe.register.serve_config`,
  :mod:`~colonpipe.register.serve_input`: the served model and what it accepts.
- :mod:`~colonpipe.register.model_card`: the Hub model card (README.md) of a model folder.
- :mod:`~colonpipe.register.model_ref`: a folder or ``models:/`` URI -> a local model folder.
- :mod:`~colonpipe.register.model_commands`: ``colonpipe predict`` and ``colonpipe export``;
  :mod:`~colonpipe.register.registry_commands`: ``colonpipe registry``;
  :mod:`~colonpipe.register.run_summary`: ``colonpipe summary``.
"""
