"""``colonpipe rollback`` and ``colonpipe registry``: registry commands for people.

    colonpipe rollback [--model NAME] [--registry registry.json]
    colonpipe registry [--model NAME]

The model name defaults to params ``register.model_name``; the store is ``tracking_uri()``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from colonpipe.params import ParamsError, load_section
from colonpipe.register.registry import CHAMPION, METRIC_TAG, PREVIOUS, RegistryError, rollback
from colonpipe.tracking.store import get_client, tracking_uri

logger = logging.getLogger(__name__)


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"colonpipe {prog}", description=doc)
    p.add_argument("--model", help="registered model name (default: params register.model_name)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    return p


def _model_name(args: argparse.Namespace) -> str:
    return args.model or load_section("register", args.params).model_name


def rollback_main(argv: list[str]) -> int:
    """Move ``champion`` back to ``previous``; record it in registry.json."""
    p = _parser("rollback", "Move the champion alias back to the previous champion.")
    p.add_argument("--registry", type=Path, default=Path("registry.json"), help="decision log")
    args = p.parse_args(argv)
    try:
        decision = rollback(get_client(), _model_name(args), registry_path=args.registry)
    except (RegistryError, ParamsError) as exc:
        logger.error("%s", exc)
        return 1
    print(f"{decision.model_name}: {decision.reason}; previous is now {decision.previous_after}")
    return 0


def registry_main(argv: list[str]) -> int:
    """Print the model's aliases and versions with their primary metric."""
    args = _parser("registry", "Show aliases and versions of the registered model.").parse_args(argv)
    try:
        name = _model_name(args)
        primary = load_section("register", args.params).primary_metric
    except ParamsError as exc:
        logger.error("%s", exc)
        return 1
    client = get_client()
    models = client.search_registered_models(filter_string=f"name = '{name}'")
    if not models:
        print(f"model {name!r} is not registered in {tracking_uri()}")
        return 1
    by_version = {str(v): a for a, v in models[0].aliases.items()}
    print(f"{name} ({tracking_uri()}): {CHAMPION}={models[0].aliases.get(CHAMPION)} "
          f"{PREVIOUS}={models[0].aliases.get(PREVIOUS)}")
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        value = mv.tags.get(METRIC_TAG + primary, "-")
        print(f"  v{mv.version:<4} {primary}={value:<10} run={mv.run_id} {by_version.get(str(mv.version), '')}")
    return 0
