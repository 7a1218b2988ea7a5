"""Ctrl-C in a test as at a terminal, whatever the test runner inherited."""

import signal


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default action.

    A CI job started in the background of a non-interactive shell inherits SIGINT *ignored*, and a process that starts
    with SIGINT ignored never sees Ctrl-C: Python installs no KeyboardInterrupt handler and bash cannot trap it. The
    scripts would then run to the end, and the interrupt tests would test nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
