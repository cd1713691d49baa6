"""`kinema train`, `kinema generate` and `kinema reason`."""

from __future__ import annotations


def add_parsers(sub) -> None:
    from kinema.model import generate, reason_cli, train

    train.add_parser(sub)
    reason_cli.add_parser(sub)
    generate.add_parser(sub)
