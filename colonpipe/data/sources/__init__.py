"""One reader per raw annotation format; ``READERS[format]`` maps a params format to its reader.

Every reader has the signature
``read(listing: SourceListing, *, official_split: bool, yolo_classes: Sequence[str], workers: int) -> ReadResult``
and never opens images (``colonpipe.data.ingest`` checks them once, for all formats).
``workers`` > 1 lets a reader that decodes annotation files (masks) use a process pool.
"""

from __future__ import annotations

from colonpipe.data.sources import class_folders, json_boxes, mask, sun_txt, voc, yolo_txt
from colonpipe.data.sources.common import ReadResult, SourceListing, list_source

READERS = {
    "class_folders": class_folders.read,
    "mask": mask.read,
    "voc": voc.read,
    "sun_txt": sun_txt.read,
    "yolo_txt": yolo_txt.read,
    "json_boxes": json_boxes.read,
}

__all__ = ["READERS", "ReadResult", "SourceListing", "list_source"]
