"""The trained model as an artefact for people and other tools (top layer, beside ``tracking``).

- :mod:`~colonpipe.register.model_card`: the Hub model card (README.md) of a model folder.
- :mod:`~colonpipe.register.model_ref`: a folder or ``models:/`` URI -> a local model folder.
- :mod:`~colonpipe.register.commands`: ``colonpipe predict`` and ``colonpipe export``.
"""
