"""One reader per raw annotation format; ``READERS[format]`` maps a params format to its reader.

Every reader has the signature ``read(listing: SourceListing, opts: ReadOptions) -> ReadResult``
(``ReadOptions.from_source`` resolves a source's params) and never opens images
(``colonpipe.data.ingest`` checks them once, for all formats). ``opts.workers`` > 1 lets a
reader that decodes annotation files (masks) use a process pool. ``scan.scan_source`` runs
a reader with the source-level rules (table labels, unannotated images, splits, groups);
the official release (``coloninst_release``) is read by ``release.read_release`` instead.
"""

from __future__ import annotations

from colonpipe.data.sources import class_folders, coco, json_boxes, label_table, mask, sun_txt, voc, yolo_txt
from colonpipe.data.sources.common import ReadOptions, ReadResult, SourceListing, list_source

READERS = {
    "class_folders": class_folders.read,
    "mask": mask.read,
    "voc": voc.read,
    "sun_txt": sun_txt.read,
    "yolo_txt": yolo_txt.read,
    "json_boxes": json_boxes.read,
    "coco": coco.read,
    "label_table": label_table.read,
}

__all__ = ["READERS", "ReadOptions", "ReadResult", "SourceListing", "list_source"]
