"""Stage 1 (create_data.py): the teacher, given the long prompt, labels every sentence, crash-safely and resumably.

``config`` holds the flags (``CreateDataConfig``, each field a flag); ``teacher_run`` is the script's
``run(config)``: backend, token budget and teacher; ``run`` labels (``LabelingConfig``, ``run_labeling``);
``run_files`` owns the output and its sidecar; ``session`` refuses a resume with other settings; ``summary`` counts
what happened; ``shards`` splits one run over several GPUs or nodes; ``context_length`` finds prompts the teacher's
context cannot hold.
"""
