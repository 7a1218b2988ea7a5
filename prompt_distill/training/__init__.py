"""Stage 2 (train_sft_trl.py): a LoRA adapter learns the teacher's labels from the sentence alone, with TRL.

``config`` holds the flags (``ScriptArguments`` + TRL's ``SFTConfig``), the parser and the parsed ``TrainingJob``;
``run`` trains (``run(job)``); ``record`` is the run record written beside the adapter (``RUN_RECORD``);
``examples`` turns the labelled file into prompt/completion examples; ``lora`` builds PEFT's config; ``data_order``
records which examples each step saw; ``tracking`` is the wandb run; ``memory_budget`` estimates GPU memory before a
run starts.
"""
