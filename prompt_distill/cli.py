"""How every script reads its flags and reports: one parser, one logging setup, one error exit.

Flags are dataclass fields, as in TRL (``trl/scripts/sft.py`` + ``SFTConfig``): ``metadata["help"]`` is the help,
the field's default the default, ``metadata["group"]`` the heading it is listed under in ``--help`` (data, model,
sampling, engine, output ...), and ``metadata["choices"]`` / ``metadata["aliases"]`` what argparse takes. Each flag is
written once. The parser is TRL's ``TrlParser`` (transformers' ``HfArgumentParser`` plus ``--config file.yaml``), so
every script accepts a YAML file of its flags, and ``--flag-name`` next to ``--flag_name``.

Library modules log through ``logging.getLogger(__name__)``; ``setup_logging`` gives the ``prompt_distill`` logger one
handler that writes the bare message to stdout, on the main process only under ``accelerate launch`` (the rule of
TRL and accelerate: other ranks log warnings and errors). What a script prints as its report stays ``print``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import sys
import types
from typing import get_type_hints

from .cli_help import DefaultsOnceFormatter
from .errors import PromptDistillError

LOGGER_NAME = "prompt_distill"
# The order of --help's headings, whatever the order of the fields (a config inherits shared flags first).
GROUP_ORDER = ("data", "task", "model", "sampling", "engine", "training", "output")


def flag(default, help: str, group: str | None = None, **argparse_kwargs):  # noqa: A002 - argparse's own word
    """A dataclass field that is a flag: ``flag(0.15, "Sampling temperature.", group="sampling")``."""
    metadata = {"help": help, **argparse_kwargs}
    if group:
        metadata["group"] = group
    return dataclasses.field(default=default, metadata=metadata)


def _without_group(field: dataclasses.Field) -> dataclasses.Field:
    plain = copy.copy(field)
    plain.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items() if k != "group"})
    return plain


def _trl_parser_class():
    from trl import TrlParser  # imported when a script parses, not when the package is imported

    return TrlParser


def make_parser(config_classes, description: str | None = None):
    """A ``TrlParser`` over ``config_classes`` whose fields are listed under their ``metadata["group"]`` headings, in
    ``GROUP_ORDER``."""

    class GroupedParser(_trl_parser_class()):
        def _add_dataclass_arguments(self, dtype):
            hints = get_type_hints(dtype)
            named = {field.metadata.get("group") for field in dataclasses.fields(dtype)} - {None}
            ordered = [name for name in GROUP_ORDER if name in named] + sorted(named - set(GROUP_ORDER))
            groups = {name: self.add_argument_group(name) for name in ordered}
            for field in dataclasses.fields(dtype):
                if not field.init:
                    continue
                field.type = hints[field.name]
                name = field.metadata.get("group")
                target = self if name is None else groups[name]
                self._parse_dataclass_field(target, _without_group(field))

        def parse_flags(self, argv=None) -> tuple:
            """One config per dataclass, from the command line and ``--config``; an unknown flag or YAML key is
            argparse's one line and exit 2 (HfArgumentParser would raise a ValueError with a traceback)."""
            *configs, from_file, unknown = self.parse_args_and_config(argv, return_remaining_strings=True,
                                                                      separate_remaining_strings=True)
            if unknown:
                self.error(f"unrecognized arguments: {' '.join(unknown)}")
            if from_file:
                self.error(f"--config: unknown flags {' '.join(from_file)}")
            return tuple(configs)

    classes = list(config_classes) if isinstance(config_classes, (list, tuple)) else [config_classes]
    parser = GroupedParser(classes, description=description, formatter_class=DefaultsOnceFormatter)
    # TRL reads --config itself before parsing (parse_args_and_config); listed here, first, so that --help shows it.
    # SUPPRESS: never an attribute of the parsed namespace, so the dataclasses are all that parsing returns.
    config_action = parser.add_argument(
        "--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
        help="YAML file of flag: value pairs (an 'env:' mapping sets environment variables); command-line flags win.",
    )
    for actions in (parser._actions, parser._optionals._group_actions):
        actions.remove(config_action)
        actions.insert(1, config_action)
    for action in parser._actions:
        # transformers gives a --no_X switch the help of --X; say what the switch does instead.
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            action.help = f"Same as --{action.dest} false."
    return parser


def parse_config(config_class, argv=None, description: str | None = None):
    """The script's config from its command line (and ``--config file.yaml``); argparse's one line and exit 2 on
    an unknown flag or a value of the wrong type."""
    (config,) = make_parser(config_class, description).parse_flags(argv)
    return config


def is_main_process() -> bool:
    """Rank 0 under ``accelerate launch`` / torchrun (RANK), and any plain ``python script.py``."""
    return os.environ.get("RANK", "0") == "0"


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (a test's capture, a redirected stream)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(main_process: bool | None = None) -> logging.Logger:
    """The ``prompt_distill`` logger writes bare messages to stdout: INFO on the main process, WARNING elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    main_process = is_main_process() if main_process is None else main_process
    logger.setLevel(logging.INFO if main_process else logging.WARNING)
    if not any(isinstance(handler, _StdoutHandler) for handler in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def report_error(error: PromptDistillError) -> int:
    """What every script does with the project's errors: one ``error:`` line on stderr, exit code 2."""
    print(f"error: {error}", file=sys.stderr)
    return 2
