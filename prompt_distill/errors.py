"""The project's one exception base, and the core's own errors (a leaf module: it imports nothing of the project).

Every error that a user can fix (a file, a flag, a model that is not there) is a ``PromptDistillError``; each
subclass also derives from the stdlib class it stands for (``ValueError`` for a bad value, ``RuntimeError`` for a
state that cannot go on), so callers that caught those before still do. The scripts catch exactly this base, print
``error: <message>`` and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PromptDistillError(Exception):
    """A problem the user can fix; the message names the file:line or the flag, and what to do."""


class DataError(PromptDistillError, ValueError):
    """A problem with an input file; the message starts with ``path:line:`` where a line is known."""


class TaskError(PromptDistillError, ValueError):
    """The prompt or the label set cannot make a task (--prompt_file, --labels)."""
