"""Parsed flags -> a stage's typed config: the one place an ``argparse.Namespace`` is read."""

from __future__ import annotations

from dataclasses import fields


def config_from_flags(config_class, args, script: str):
    """``config_class(**vars(args))``, refusing a flag without a field or a field without a flag, so a flag added to
    a script but not to its config (or the reverse) fails at once, naming both sides."""
    given, expected = set(vars(args)), {field.name for field in fields(config_class)}
    if given != expected:
        raise TypeError(f"{script}'s flags and {config_class.__name__} differ: flags only {sorted(given - expected)}, "
                        f"config only {sorted(expected - given)}")
    return config_class(**vars(args))
