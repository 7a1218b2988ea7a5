"""Prompt distillation: a thinking teacher with a long prompt labels data; a LoRA student learns it promptless.

The trained student as a classifier (docs/predict.md)::

    from prompt_distill import Student
    student = Student.load("models/demo_trl")
    student.classify(["Bonjour tout le monde"])  # [Prediction(text=..., label="fr", probability=..., ...)]
"""

from .student.classifier import Prediction, Student

__all__ = ["Prediction", "Student"]
