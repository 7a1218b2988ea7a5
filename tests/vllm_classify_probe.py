"""Run VLLMEngine.classify in its own process and print the probabilities as JSON (not a test module).

The vllm_cpu lane runs one vLLM process at a time; a subprocess ends its engine with it, and vLLM's spawned
engine core needs a ``__main__`` guard that a pytest process does not give it.
Usage: python tests/vllm_classify_probe.py MODEL ADAPTER|none CHATS_JSON LABELS_JSON...
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from prompt_distill.engines.vllm_engine import VLLMEngine

    model, adapter, chats_file, *label_sets = sys.argv[1:]
    chats = json.loads(Path(chats_file).read_text("utf-8"))
    engine = VLLMEngine(model, adapter_path=None if adapter == "none" else adapter, max_model_len=512)
    answers = {}
    for label_set in label_sets:
        labels = tuple(json.loads(label_set))
        reported = []
        results = engine.classify(chats, labels, on_batch=lambda indices, _, seen=reported: seen.extend(indices))
        answers[label_set] = {"probabilities": [r.probabilities for r in results], "reported": reported,
                              "prompt_tokens": [r.prompt_tokens for r in results]}
        if engine.lora_request is not None:  # the same engine without the adapter: the base model
            with_adapter, engine.lora_request = engine.lora_request, None
            answers["base " + label_set] = {"probabilities": [r.probabilities for r in engine.classify(chats, labels)]}
            engine.lora_request = with_adapter
    print("RESULT " + json.dumps(answers))


if __name__ == "__main__":
    main()
