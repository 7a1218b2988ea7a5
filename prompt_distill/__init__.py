"""Prompt distillation: a thinking teacher with a long prompt labels data; a LoRA student learns it promptless."""
