"""The skeleton every ``stages/*.py`` script shares: arguments, logging, its params section, one
clear error line.

    def main(argv=None):
        return run_stage("ingest", __doc__, add_arguments, run, argv, errors=(IngestError,))

``add_arguments(parser)`` adds the stage's own arguments (``--params``, default ``params.yaml``,
is always added); ``run(args, params)`` does the work with the loaded section and returns an exit
code (None means 0). ``ParamsError`` and the listed ``errors`` (bad input the stage reports) are
logged as one line and give exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Optional

from colonpipe.params import ParamsError, load_section

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_stage(section: str, doc: Optional[str], add_arguments: Callable[[argparse.ArgumentParser], None],
              run: Callable[[argparse.Namespace, Any], Optional[int]], argv: Optional[list[str]] = None, *,
              errors: tuple[type[BaseException], ...] = (), name: Optional[str] = None) -> int:
    """Parse ``argv``, log to stderr, load params section ``section`` and call ``run``; see the module doc.

    ``name`` is the stage's logger name (``stages.<name>``; default ``section``).
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        params = load_section(section, args.params)
        code = run(args, params)
    except (ParamsError, *errors) as exc:
        logging.getLogger(f"stages.{name or section}").error("%s", exc)
        return 1
    return 0 if code is None else code
