"""The `kinema` command line: every flag of every command says what it is for."""

import argparse

from kinema.cli import build_parser


def _undocumented(parser, path):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _undocumented(sub, path + [name])
        elif not a.help and a.dest != "help":
            yield " ".join(path + [a.option_strings[0] if a.option_strings else a.dest])


def test_every_flag_of_every_command_has_help():
    assert list(_undocumented(build_parser(), ["kinema"])) == []
