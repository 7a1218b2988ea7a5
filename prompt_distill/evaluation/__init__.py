"""Stage 3 (evaluate.py): the student on held-out sentences, graded on gold labels, against the teacher and base.

``config`` holds the flags (``EvaluationConfig``); ``run`` selects the sentences and runs the student; ``results``
owns the results format (``Prediction``, ``build_results``, ``finish``), which a live run and ``rescoring`` (saved
predictions re-graded without a model) both end in; ``metrics`` computes the numbers and ``report`` formats them;
``calibration`` and ``cascade`` use the student's confidence; ``distillation`` compares base, teacher and student;
``outputs`` writes JSON, PNGs and the wandb log; ``answer_agreement`` compares scored and generated answers.
"""
