"""``--help`` that states each default once.

argparse's ArgumentDefaultsHelpFormatter appends "(default: X)" to every option, also after a help text that
already says its default ("(default: eval) ... (default: eval)", "Default: ar,de,... (default: None)") and as
"(default: None)" for an option whose default is computed at run time. This formatter appends it only where
the help says nothing of a default, and not for None or for on/off switches (``--overwrite``: "(default: False)").
"""

from __future__ import annotations

import argparse


def states_default(help_text: str) -> bool:
    return "default:" in help_text.lower() or "%(default)" in help_text


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _format_action_invocation(self, action):
        """``--base_model, --base-model, --model_name BASE_MODEL``: every spelling, then the value once (argparse
        repeats the value after each spelling, which an old name kept as an alias makes long)."""
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return f"{', '.join(action.option_strings)} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_help_string(self, action):
        help_text = action.help or ""
        if states_default(help_text) or action.default is None or action.default is argparse.SUPPRESS:
            return help_text
        if action.nargs == 0:  # a switch (store_true / store_false): its default is its absence
            return help_text
        if action.nargs == "?" and action.const is True and action.default is False:  # a dataclass bool, off
            return help_text
        return super()._get_help_string(action)
