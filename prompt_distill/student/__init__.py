"""The trained student, as evaluate.py, benchmark.py and predict.py load it.

``check`` finds the adapter and its run record and refuses a mismatch with the base model, task or split;
``engine`` builds the engine that serves it; ``classifier`` is the production API (``prompt_distill.Student``);
``config`` holds predict.py's flags (``PredictConfig``).
"""
