"""The interim annotation manifest (``data/interim/annotations.parquet``).

One row per annotated object: an image with three polyps gives three rows, an image
with a class label only gives one row with ``box`` null. ``instruct`` merges boxes of
one (image, category) pair into their enclosing box.

| column   | type              | meaning                                                       |
|----------|-------------------|---------------------------------------------------------------|
| dataset  | string            | source name from params (``ingest.sources[].name``)           |
| split    | string, nullable  | ``train``/``val``/``test`` when the source's split is official |
| image    | string            | image path relative to the raw root, posix; the record ``id`` |
| width    | int32             | source image width in pixels                                  |
| height   | int32             | source image height in pixels                                 |
| category | string            | ColonINST child category (canonical name)                     |
| box      | list<int32> (4)   | ``[x1, y1, x2, y2]`` inclusive source pixels, or null         |
| caption  | string, nullable  | the image's caption, repeated on each of its rows             |
| group    | string, nullable  | video / case id (only present when a source groups frames)   |

Rows are sorted by (image, category, box) so the file is byte-identical on rerun.

The ``group`` column exists only when some source defines groups (``group_by`` or a table's
group column): images sharing (dataset, group) are split together. Two optional JSON
entries of the parquet key-value metadata carry what ``instruct`` needs beyond rows:
``colonpipe.expected`` (``{dataset: {"expected": {split: n}, "expected_reg": ..., "exact":
bool}}`` from the catalogue) and ``colonpipe.release`` (``{"json_dir": path, "files":
{relative path: sha256}}`` for an official release passed through unchanged). A manifest
without them (the demo's) is byte-identical to one written before they existed.
"""

from __future__ import annotations

import pyarrow as pa

COLUMNS = ("dataset", "split", "image", "width", "height", "category", "box", "caption")

SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("image", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        # Variable-size list holding exactly 4 values: pyarrow 25.0.1 writes a fixed-size
        # list<int32>[4] column with null rows but cannot read it back ("Expected all lists
        # to be of size=4"), so the length is checked by readers instead of the type.
        pa.field("box", pa.list_(pa.int32())),
        pa.field("caption", pa.string()),
    ]
)

GROUP = pa.field("group", pa.string())
GROUPED_SCHEMA = SCHEMA.append(GROUP)
EXPECTED_KEY = b"colonpipe.expected"
RELEASE_KEY = b"colonpipe.release"

