"""benchmark.py: the teacher setup against the distilled student, on one machine, backend and set of sentences.

``run`` holds the flags and builds both engines; ``measure`` times them; ``memory`` plans GPU memory for both;
``batching`` measures throughput by batch size; ``student_latency`` compares the student's ways to answer.
"""
