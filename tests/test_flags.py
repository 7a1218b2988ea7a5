from argparse import Namespace
from dataclasses import dataclass

import pytest

from prompt_distill.flags import config_from_flags


@dataclass(frozen=True)
class Settings:
    model: str
    seed: int


def test_flags_become_the_config():
    assert config_from_flags(Settings, Namespace(model="m", seed=3), "x.py") == Settings("m", 3)


def test_a_flag_without_a_field_and_a_field_without_a_flag_are_both_named():
    with pytest.raises(TypeError, match=r"x.py's flags and Settings differ: flags only \['extra'\], config only \['seed'\]"):
        config_from_flags(Settings, Namespace(model="m", extra=1), "x.py")
