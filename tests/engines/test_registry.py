"""The engine registry (issue 20 item 5): every registered engine class has the whole ``Engine`` protocol, --backend's
choices are the registry's, and an engine is two pieces, a class and a spec: a toy engine registered here labels
sentences through create_data's real labelling code, with no stage file knowing its name.
"""

import inspect

import pytest

from prompt_distill import engines
from prompt_distill.data import read_training_file
from prompt_distill.engines import BACKENDS, BackendError, EngineSettings, EngineSpec, registry
from prompt_distill.engines.base import Engine, Generation, LabelScores
from prompt_distill.labeling import teacher_run
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.task import TEACHER_USER_PREFIX, language_task

TASK = language_task()
ANSWERS = {"Hello there": "en", "Guten Tag": "de", "Bonjour à tous": "fr", "Hola amigo": "es"}


def protocol_members() -> tuple[set[str], set[str]]:
    """(attributes, methods) of ``base.Engine``."""
    attributes = set(Engine.__annotations__)
    methods = {name for name, value in vars(Engine).items()
               if not name.startswith("_") and callable(getattr(Engine, name))}
    return attributes, methods


def annotated(cls) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__annotations__", {})}


def test_the_protocol_names_what_the_stages_use():
    attributes, methods = protocol_members()
    assert attributes == {"name", "tokenizer", "max_context_tokens", "notes"}
    assert methods == {"options", "describe_loading", "describe", "close", "generate", "count_prompt_tokens",
                       "classify"}


def test_backends_are_auto_then_the_registry_in_its_order():
    assert registry.names() == ("vllm", "transformers", "openai")
    assert ("auto", *registry.names()) == BACKENDS


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_engine_class_has_the_whole_protocol(name):
    cls = engines.engine_class(name)  # no model loads; vLLM itself is imported only by the engine's __init__
    attributes, methods = protocol_members()
    assert cls.name == name
    assert attributes <= annotated(cls) | set(vars(cls)), attributes - annotated(cls)
    for method in methods:
        assert callable(getattr(cls, method, None)), f"{cls.__name__} has no {method}"
        wanted = list(inspect.signature(getattr(Engine, method)).parameters)
        own = list(inspect.signature(getattr(cls, method)).parameters)
        assert own[: len(wanted)] == wanted, f"{cls.__name__}.{method}{own} is not Engine.{method}{wanted}"
    # What ``options`` returns, the engine's constructor takes.
    options = cls.options(EngineSettings(context=lambda: 1234))
    parameters = inspect.signature(cls.__init__).parameters
    if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        assert set(options) <= set(parameters), set(options) - set(parameters)
    spec = registry.engine_spec(name)
    if spec.context_flag:  # the flag that bounds the context is the keyword that gets the sized context
        assert options[spec.context_flag] == 1234
        assert spec.context_flag in CreateDataConfig.__dataclass_fields__


# -- an engine in two pieces --------------------------------------------------------------------------------------
class ToyEngine:
    """An engine with no model: it answers each sentence from ``ANSWERS``."""

    name = "toy"
    tokenizer = None
    max_context_tokens = None
    built: list = []

    @classmethod
    def options(cls, settings: EngineSettings) -> dict:
        return {"batch_size": settings.batch_size}

    @classmethod
    def describe_loading(cls) -> str:
        return "the toy's answer table"

    def __init__(self, model: str, *, batch_size: int):
        self.model, self.batch_size, self.notes = model, batch_size, []
        ToyEngine.built.append(self)

    def describe(self) -> str:
        return f"toy {self.model}"

    def close(self) -> None:
        pass

    def count_prompt_tokens(self, chat, params) -> int:
        return sum(len(message["content"].split()) for message in chat)

    def generate(self, chats, params, on_batch=None):
        sentences = [chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX) for chat in chats]
        results = [Generation(f"{params.answer_prefix}{ANSWERS[sentence]}", self.count_prompt_tokens(chat, params),
                              3, "stop", 0.0) for chat, sentence in zip(chats, sentences, strict=True)]
        if on_batch is not None:
            on_batch(list(range(len(chats))), results)
        return results

    def classify(self, chats, labels, on_batch=None):
        answers = [ANSWERS[chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX)] for chat in chats]
        results = [LabelScores({label: float(label == answer) for label in labels}, 1, 0.0) for answer in answers]
        if on_batch is not None:
            on_batch(list(range(len(chats))), results)
        return results


@pytest.fixture
def toy(monkeypatch):
    """The toy registered as the spec says: a name and where its class lives; it may not be picked by auto."""
    ToyEngine.built.clear()
    monkeypatch.setitem(registry.ENGINES, "toy", EngineSpec(name="toy", engine=f"{__name__}:ToyEngine"))


def test_a_registered_engine_labels_through_create_data_with_no_stage_file_naming_it(toy, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("\n".join(ANSWERS) + "\n", encoding="utf-8")
    output = tmp_path / "out" / "labels.jsonl"
    config = CreateDataConfig(input_file=str(tmp_path / "in.txt"), output_file=str(output), teacher_model="toy-model",
                              backend="toy", max_tokens=8)
    summary = teacher_run.run(config)
    assert summary.labelled_now == len(ANSWERS) and summary.unparseable_now == 0
    assert read_training_file(output, TASK) == list(ANSWERS.items())
    [engine] = ToyEngine.built
    assert (engine.model, engine.batch_size) == ("toy-model", 8)  # its options, from the flags' settings
    out = capsys.readouterr().out
    assert "Backend: toy (--backend toy)" in out
    assert "Loading the teacher toy-model with the toy's answer table." in out
    # The spec's capabilities are the defaults: it scores no labels, so --constrained_answer auto is off.
    assert "max_tokens 8, temperature 0.15, constrained answer off" in out


def test_auto_picks_only_engines_that_say_so_and_tensor_parallel_needs_one_that_spans_gpus(toy):
    assert engines.choose_backend("auto").backend != "toy"
    with pytest.raises(BackendError) as refused:
        engines.choose_backend("toy", tensor_parallel_size=2)
    assert str(refused.value) == ("--tensor_parallel_size 2 needs vLLM, but the backend is toy (--backend toy); toy "
                                  "runs on one device. Make vLLM importable, or drop --tensor_parallel_size.")
