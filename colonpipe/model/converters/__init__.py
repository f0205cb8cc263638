"""Converters from published checkpoints to colonpipe's model folder (``models/base`` layout)."""
