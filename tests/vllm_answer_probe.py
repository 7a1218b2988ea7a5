"""Run VLLMEngine.generate with label scoring in its own process and print the generations as JSON (not a test
module; see tests/vllm_classify_probe.py for why a subprocess).
Usage: python tests/vllm_answer_probe.py MODEL CHATS_JSON LABELS_JSON
"""

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PREFIX = "Final Answer: "


def main() -> None:
    from prompt_distill.engines.base import GenerationParams
    from prompt_distill.engines.vllm_engine import VLLMEngine
    from prompt_distill.task import Task

    model, chats_file, labels_json = sys.argv[1:]
    chats = json.loads(Path(chats_file).read_text("utf-8"))
    labels = tuple(json.loads(labels_json))
    task = Task(labels=labels, system_prompt="Reply with Final Answer: <label>.")
    engine = VLLMEngine(model, max_model_len=1024)
    free = GenerationParams(max_tokens=8, answer_prefix=PREFIX, answer_parser=task.parse)
    runs = {"unscored": free, "free": replace(free, score_labels=labels),
            "constrained": replace(free, answer_labels=labels, score_labels=labels),
            # The student's form: the reply is the label alone, so its answer position is the prompt's end.
            "bare": replace(free, answer_labels=labels, score_labels=labels, answer_prefix="", answer_parser=None)}
    answers = {}
    for name, params in runs.items():
        reported = []

        def seen(indices, generations, reported=reported):
            reported.extend([index, asdict(generation)] for index, generation in zip(indices, generations, strict=True))

        generations = engine.generate(chats, params, on_batch=seen)
        answers[name] = {"generations": [asdict(generation) for generation in generations], "reported": reported}
    answers["classify"] = [scores.probabilities for scores in engine.classify(chats, labels)]
    print("RESULT " + json.dumps(answers))


if __name__ == "__main__":
    main()
