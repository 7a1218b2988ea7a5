"""``--help`` that states each default once.

argparse's ArgumentDefaultsHelpFormatter appends "(default: X)" to every option, also after a help text that
already says its default ("(default: eval) ... (default: eval)", "Default: ar,de,... (default: None)") and as
"(default: None)" for an option whose default is computed at run time. This formatter appends it only where
the help says nothing of a default, and not for None or for on/off switches (``--overwrite``: "(default: False)").

Also ``print_help_cached``: train_sft_trl.py's --help from a cache keyed by everything the text is made of.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import sys
from pathlib import Path


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


# -- train_sft_trl.py --help without importing TRL -----------------------------------------------------------
# Building training's parser imports TRL, transformers, torch and PEFT (about 4-5 s on 2 cores) only to print
# text that changes when the code or those packages change. The printed help is kept under the cache folder,
# keyed by everything it is made of; any change (a source file of the project or the script, a package version,
# the Python version, the terminal width) makes a new key, so a stale help is never printed.
HELP_PACKAGES = ("trl", "transformers", "accelerate", "peft", "torch")
HELP_REQUESTS = ("-h", "--help")


def help_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "prompt-distill" / "help"


def _help_key(script: Path) -> str:
    digest = hashlib.sha256()
    for name in HELP_PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}={version};".encode())
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""  # argparse's %(prog)s
    digest.update(f"{sys.version};{shutil.get_terminal_size().columns};{script.name};{prog};".encode())
    package = Path(__file__).resolve().parent
    for source in [script, *sorted(package.rglob("*.py")), *sorted(package.rglob("*.md"))]:
        digest.update(source.relative_to(source.parent.parent).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def asks_for_help(argv) -> bool:
    """``-h``/``--help`` and no ``--config`` (whose values become the defaults that --help shows)."""
    return any(arg in HELP_REQUESTS for arg in argv) and not any(arg.startswith("--config") for arg in argv)


def print_help_cached(script, argv, build_parser) -> bool:
    """When ``argv`` asks for --help: print it from the cache if it is current, else ``build_parser()``'s help
    (cached for the next time); True when help was printed. A cache that cannot be written is skipped."""
    if not asks_for_help(argv):
        return False
    script = Path(script).resolve()
    cached = help_cache_dir() / f"{script.stem}-{_help_key(script)}.txt"
    try:
        text = cached.read_text("utf-8")
    except OSError:
        text = build_parser().format_help()
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            partial.write_text(text, "utf-8")
            os.replace(partial, cached)
        except OSError:
            pass
    sys.stdout.write(text)
    return True
