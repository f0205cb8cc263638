"""``colonpipe <command> ...``: one entry point for the library's command-line tools.

Each command is ``module:function`` taking ``argv: list[str]`` and returning an exit code;
modules are imported lazily so ``colonpipe --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line help)
    "export": ("colonpipe.register.model_commands:export_main", "write a model as a stock transformers LLaVA folder"),
    "predict": ("colonpipe.register.model_commands:predict_main", "answer a question about image files with a model"),
    "import-colongpt": ("colonpipe.model.converters.colongpt_v1:main",
                        "convert the published ColonGPT-v1 checkpoint (merged or LoRA) into a model folder"),
    "recipe": ("colonpipe.recipe:main", "validate a recipe file and print its `dvc exp run -S ...` command"),
    "merge": ("colonpipe.model.merge_adapter:main", "fold a trained LoRA adapter + projector into a full model folder"),
    "score": ("colonpipe.evaluate.command:main", "score ColonINST prediction files (ours or the reference's)"),
    "check-data": ("colonpipe.data.check:main", "check a ColonINST JSON folder against its images"),
    "rollback": ("colonpipe.register.registry_commands:rollback_main", "move the registry's champion alias back to previous"),
    "registry": ("colonpipe.register.registry_commands:registry_main", "show the registered model's aliases and versions"),
    "summary": ("colonpipe.register.run_summary:main", "print the last run's metrics and registry decision"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: colonpipe <command> [args]\n\ncommands:")
        for name, (_, doc) in sorted(COMMANDS.items()):
            print(f"  {name:<14} {doc}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    target, _ = COMMANDS[argv[0]]
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
