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
    """A dataclass field that is a flag: ``flag(0.15, "Sampling temperature.", group="sampling")``;
    ``aliases=["--old_name"]`` keeps an old spelling working (its ``--old-name`` too, and ``old_name:`` in YAML)."""
    metadata = {"help": help, **argparse_kwargs}
    if group:
        metadata["group"] = group
    return dataclasses.field(default=default, metadata=metadata)


# Where a config's fields are recorded as given (on the command line or in --config), see ``given_flags``.
_GIVEN = "_given_flags"


def given_flags(config) -> frozenset[str]:
    """The fields of ``config`` the user gave (command line or ``--config``), as parsed by ``parse_flags``; for a
    config built in code, the fields whose value differs from their default."""
    recorded = getattr(config, "__dict__", {}).get(_GIVEN)
    if recorded is not None:
        return recorded
    changed = set()
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            changed.add(field.name)  # required: always given
            continue
        if getattr(config, field.name) != default:
            changed.add(field.name)
    return frozenset(changed)


def misplaced_flags_line(names: list[str], applies_to: str, alternative: str | None = None) -> str:
    """The one line that refuses flags given where they do nothing: "--a, --b apply to APPLIES_TO. Drop them[, or
    ALTERNATIVE]." """
    several = len(names) > 1
    return (f"{', '.join('--' + name for name in names)} {'apply' if several else 'applies'} to {applies_to}. "
            f"Drop {'them' if several else 'it'}" + (f", or {alternative}." if alternative else "."))


def _flag_field(field: dataclasses.Field) -> dataclasses.Field:
    """The field as transformers' parser takes it: no ``group``, and each alias in both spellings."""
    plain = copy.copy(field)
    metadata = {k: v for k, v in field.metadata.items() if k != "group"}
    aliases = metadata.get("aliases") or []
    aliases = [aliases] if isinstance(aliases, str) else list(aliases)
    if aliases:
        spellings = []
        for alias in aliases:
            spellings += [alias] + ([alias.replace("_", "-")] if alias.startswith("--") and "_" in alias else [])
        metadata["aliases"] = list(dict.fromkeys(spellings))
    plain.metadata = types.MappingProxyType(metadata)
    return plain


def _field_aliases(field: dataclasses.Field) -> list[str]:
    aliases = field.metadata.get("aliases") or []
    return [aliases] if isinstance(aliases, str) else list(aliases)


def _trl_parser_class():
    from trl import TrlParser  # imported when a script parses, not when the package is imported

    return TrlParser


def _yaml_value_error(action: argparse.Action, value) -> str | None:
    """Why a ``--config`` value cannot be the flag's (argparse checks a command-line value, and a YAML string, the
    same way; a YAML number, list or boolean it would take as it is)."""
    if value is None:
        return None
    convert = action.type
    values = value if action.nargs in ("+", "*") and isinstance(value, list) else [value]
    if action.choices is not None:
        wrong = [item for item in values if item not in action.choices]
        if wrong:  # YAML reads an unquoted off/on/yes/no as a boolean: quote it
            return f"invalid choice: {wrong[0]!r} (choose from {', '.join(map(str, action.choices))})"
    if isinstance(value, str):
        return None  # argparse converts a string default itself, and refuses it in its own one line
    if convert in (int, float):
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or (
                    convert is int and isinstance(item, float) and not item.is_integer()):
                return f"invalid {convert.__name__} value: {item!r}"
    elif getattr(convert, "__name__", "") == "string_to_bool" and not isinstance(value, (bool, int)):
        return f"invalid boolean value: {value!r}"
    return None


def make_parser(config_classes, description: str | None = None):
    """A ``TrlParser`` over ``config_classes`` whose fields are listed under their ``metadata["group"]`` headings, in
    ``GROUP_ORDER``; a class's fields without a group go under its ``HELP_HEADING`` (listed last) if it has one."""

    class GroupedParser(_trl_parser_class()):
        def _flag_group(self, name: str):
            groups = self.__dict__.setdefault("_flag_groups", {})
            if name not in groups:
                groups[name] = self.add_argument_group(name)
            return groups[name]

        def _add_dataclass_arguments(self, dtype):
            hints = get_type_hints(dtype)
            aliases = self.__dict__.setdefault("_alias_dests", {})
            rest = getattr(dtype, "HELP_HEADING", None)
            # A class's own fields first, then those it inherits (the shared task, split and engine flags).
            own = dtype.__dict__.get("__annotations__", {})
            for field in sorted(dataclasses.fields(dtype), key=lambda field: field.name not in own):
                if not field.init:
                    continue
                field.type = hints[field.name]
                name = field.metadata.get("group") or rest
                target = self if name is None else self._flag_group(name)
                self._parse_dataclass_field(target, _flag_field(field))
                for alias in _field_aliases(field):
                    aliases[alias.lstrip("-").replace("-", "_")] = field.name

        def order_groups(self) -> None:
            """--help's headings: options, then GROUP_ORDER, then other groups, then the HELP_HEADING ones."""
            rests = {getattr(dtype, "HELP_HEADING", None) for dtype in self.dataclass_types} - {None}
            rank = {name: index for index, name in enumerate(GROUP_ORDER)}
            fixed = [group for group in self._action_groups if group.title not in self.__dict__.get("_flag_groups", {})]
            named = [group for group in self._action_groups if group not in fixed]
            named.sort(key=lambda group: (group.title in rests, rank.get(group.title, len(rank)), group.title))
            self._action_groups[:] = fixed + named

        def set_defaults_with_config(self, **kwargs) -> list[str]:
            """``--config``'s values: an old name (alias) read as its flag, a value of the wrong type refused in one
            line as argparse refuses it on the command line."""
            aliases = self.__dict__.get("_alias_dests", {})
            renamed, spelled = {}, {}
            for key, value in kwargs.items():
                dest = aliases.get(key, key)
                if dest in renamed:
                    self.error(f"--config: {spelled[dest]} and {key} are the same flag; give one.")
                renamed[dest], spelled[dest] = value, key
            actions = {action.dest: action for action in self._actions if action.option_strings}
            for key, value in renamed.items():
                action = actions.get(key)
                if action is not None and action.option_strings[0].startswith("--no_"):
                    action = next((a for a in self._actions if a.dest == key and a is not action), action)
                why = _yaml_value_error(action, value) if action is not None else None
                if why:
                    self.error(f"--config: {key}: {why}")
            self.__dict__["_from_config"] = [key for key in renamed if key in actions]
            return super().set_defaults_with_config(**renamed)

        def _given_on_command_line(self, argv) -> set[str]:
            given = set()
            for token in argv:
                if not token.startswith("-") or token == "--config":
                    continue
                found = self._parse_optional(token)
                found = found[0] if isinstance(found, list) and found else found  # Python 3.12+: a list
                if found and found[0] is not None:
                    given.add(found[0].dest)
            return given

        def parse_flags(self, argv=None) -> tuple:
            """One config per dataclass, from the command line and ``--config``; an unknown flag or YAML key is
            argparse's one line and exit 2 (HfArgumentParser would raise a ValueError with a traceback). Each config
            records the fields that were given (``given_flags``)."""
            argv = list(sys.argv[1:] if argv is None else argv)
            *configs, from_file, unknown = self.parse_args_and_config(argv, return_remaining_strings=True,
                                                                      separate_remaining_strings=True)
            if unknown:
                self.error(f"unrecognized arguments: {' '.join(unknown)}")
            if from_file:
                self.error(f"--config: unknown flags {' '.join(from_file)}")
            given = self._given_on_command_line(argv) | set(self.__dict__.get("_from_config", ()))
            for config in configs:
                names = {field.name for field in dataclasses.fields(config)}
                if hasattr(config, "__dict__"):
                    object.__setattr__(config, _GIVEN, frozenset(given & names))
            return tuple(configs)

    classes = list(config_classes) if isinstance(config_classes, (list, tuple)) else [config_classes]
    # A short usage line: argparse would list every flag (about 120 lines for training), also above each error.
    parser = GroupedParser(classes, description=description, formatter_class=DefaultsOnceFormatter,
                           usage="%(prog)s [-h] [--config FILE.yaml] [--flag VALUE ...]")
    parser.order_groups()
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
