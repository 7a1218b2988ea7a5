"""The parts of scripts/gpu_smoke.py: ``common`` (tokenizer, timing, checks), ``tiny`` (part A: label, train,
reload and classify on a tiny Qwen3-MoE), ``student_arch`` (part B: the real student architecture with random
weights made on the device). They import the project, torch, transformers, peft and trl; nothing else."""
