"""Prompt distillation: a thinking teacher with a long prompt labels data; a LoRA student learns it promptless.

The trained student as a classifier (docs/predict.md)::

    from prompt_distill import Student
    student = Student.load("models/demo_trl")
    student.classify(["Bonjour tout le monde"])  # [Prediction(text=..., label="fr", probability=..., ...)]
"""

__all__ = ["Prediction", "Student"]


def __getattr__(name: str):
    """``Student`` and ``Prediction`` on first use: importing a submodule (``prompt_distill.gpus``, a stage's
    config for ``--help``) then loads neither the student's engines nor torch."""
    if name in __all__:
        from .student import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
