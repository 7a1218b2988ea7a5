"""benchmark.py: the teacher setup against the distilled student, on one machine, backend and set of sentences.

``config`` holds the flags (``BenchmarkConfig``); ``run`` builds both engines, measures and returns the results
(``report``: the table, ``save_results``: the JSON); ``measure`` picks the sentences and times them; ``memory``
plans GPU memory for both; ``batching`` measures throughput by batch size; ``student_latency`` compares the
student's ways to answer.
"""
