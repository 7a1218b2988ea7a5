"""Stage 3 (evaluate.py): the student on held-out sentences, graded on gold labels, against the teacher and base.

``run`` holds the flags and the evaluation; ``rescoring`` re-grades saved predictions without a model; ``metrics``
computes the numbers and ``report`` prints them; ``calibration`` and ``cascade`` use the student's confidence;
``distillation`` compares base, teacher and student; ``outputs`` writes JSON, PNGs and the wandb log;
``answer_agreement`` compares scored and generated answers.
"""
