"""Task specs: one YAML file per task in foresight/evals/tasks/, validated on load.

A task is data: where its items come from (a loader hook and its options), how an item becomes a prompt (Python
format templates over the item's fields), which kind of request scores it, few-shot settings, and metrics. The
Python that a spec cannot express lives in small named hooks: loaders (foresight.evals.loaders) and, for generated
answers, scorers (foresight.evals.scorers). Keys and values are checked with the same validator as run configs, so a
misspelt key or a wrong value is named with its file and the closest valid key.

Request kinds (as in lm-evaluation-harness):
  multiple_choice        one loglikelihood request (context, delimiter + choice) per choice; the most likely wins
  loglikelihood_rolling  the log-likelihood of a whole text, in windows of the model's context (bits per byte)
  generate_until         greedy (or sampled) generation until a stop string, then a scorer hook
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from foresight.errors import ForesightError

TASKS_DIR = Path(__file__).parent / "tasks"

METRICS = {
    "multiple_choice": {"acc", "acc_norm", "ece"},
    "loglikelihood_rolling": {"bits_per_byte"},
    "generate_until": {"pass_at_k", "exact_match"},
}


@dataclass
class SourceSpec:
    loader: str = ""  # a function in foresight.evals.loaders.LOADERS
    artifact: str = ""  # the pinned download it reads (foresight.data.sources.ARTIFACTS), recorded in results
    options: dict = field(default_factory=dict)  # keyword arguments for the loader


@dataclass
class FewShotSpec:
    shots: int = 0  # examples before each item by default (--shots overrides)
    max_shots: int = 0  # the most --shots may ask for
    # Where examples come from. first_per_group: the first max_shots items of each group (in the loader's order)
    # are the examples for that group's items and are never scored, whatever --shots is, so 0- and k-shot results
    # are on the same items.
    pool: Literal["none", "first_per_group"] = "none"
    separator: str = "\n\n"  # between examples, and between the last example and the item


@dataclass
class GenerationSpec:
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    samples: int = 1  # completions per item (pass@k with k <= samples)
    k: list[int] = field(default_factory=lambda: [1])  # the k of pass@k


@dataclass
class TaskSpec:
    name: str = ""
    description: str = ""
    source: SourceSpec = field(default_factory=SourceSpec)
    request: Literal["multiple_choice", "loglikelihood_rolling", "generate_until"] = "multiple_choice"
    preamble: str = ""  # template before the examples and the item (lm-eval's "description")
    prompt: str = ""  # template of one item's question (or, for loglikelihood_rolling, its text)
    # multiple_choice: a list of templates (the same choices for every item, e.g. letters), or the name of the
    # item field that holds the item's list of choice texts.
    choices: list[str] | str = field(default_factory=list)
    target: str = ""  # item field: the index of the right choice, or what a scorer checks against
    target_delimiter: str = " "  # between the prompt and a choice (the choice's log-likelihood includes it)
    fewshot: FewShotSpec = field(default_factory=FewShotSpec)
    group_by: str = ""  # item field whose values get their own accuracies (e.g. MMLU's subject)
    metrics: list[str] = field(default_factory=list)
    calibration: bool = False  # write an ECE and a reliability diagram from the choice probabilities
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    scorer: str = ""  # generate_until: a function in foresight.evals.scorers.SCORERS
    path: str = ""  # the file it was read from (set on load, not in the file)

    def template_fields(self) -> dict[str, str]:
        """{spec key: template} of every template the items must fill."""
        fields = {"preamble": self.preamble, "prompt": self.prompt}
        if isinstance(self.choices, list):
            fields.update({f"choices[{i}]": c for i, c in enumerate(self.choices)})
        return fields


def _names_in(template: str) -> set[str]:
    """The item fields a format template reads ("{choices[0]}" reads "choices")."""
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.add(name.split("[")[0].split(".")[0])
    return names


def render(template: str, item: dict, spec: TaskSpec, key: str) -> str:
    try:
        return template.format_map(item)
    except (KeyError, IndexError, ValueError) as e:
        fields = ", ".join(sorted(k for k in item if not k.startswith("_")))
        raise ForesightError(f"{spec.path}: field '{key}': cannot fill {template!r} from item {item.get('id')!r} "
                             f"({type(e).__name__}: {e}; the items have: {fields})") from None


def _check(spec: TaskSpec, where: str) -> None:
    from foresight.evals.loaders import LOADERS
    from foresight.evals.scorers import SCORERS

    def fail(key: str, message: str) -> None:
        raise ForesightError(f"{where}: field '{key}': {message}")

    def close(name: str, options) -> str:
        match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
        return f" (did you mean '{match[0]}'?)" if match else f" (known: {', '.join(sorted(options))})"

    for key in ("name", "description", "prompt"):
        if not getattr(spec, key).strip():
            fail(key, "is required")
    if spec.name != Path(where).stem:
        fail("name", f"must match the file name ({Path(where).stem!r}), not {spec.name!r}")
    if spec.source.loader not in LOADERS:
        fail("source.loader", f"unknown loader {spec.source.loader!r}" + close(spec.source.loader, LOADERS))
    if spec.source.artifact:
        from foresight.data.sources import ARTIFACTS

        if spec.source.artifact not in ARTIFACTS:
            fail("source.artifact", f"unknown artifact {spec.source.artifact!r}" + close(spec.source.artifact,
                                                                                          ARTIFACTS))
    if not spec.metrics:
        fail("metrics", f"is required (for {spec.request}: {', '.join(sorted(METRICS[spec.request]))})")
    for m in spec.metrics:
        if m not in METRICS[spec.request]:
            fail("metrics", f"{m!r} does not apply to request {spec.request!r}" + close(m, METRICS[spec.request]))
    if spec.request == "multiple_choice":
        if not spec.choices:
            fail("choices", "is required for multiple_choice (a list of templates, or an item field name)")
        if not spec.target:
            fail("target", "is required for multiple_choice (the item field holding the right choice's index)")
    if spec.request == "generate_until":
        if spec.scorer not in SCORERS:
            fail("scorer", f"unknown scorer {spec.scorer!r}" + close(spec.scorer, SCORERS))
        g = spec.generation
        if g.max_new_tokens < 1 or g.samples < 1 or not g.k or min(g.k) < 1 or max(g.k) > g.samples:
            fail("generation", "needs max_new_tokens >= 1, samples >= 1 and 1 <= k <= samples")
    if spec.calibration and spec.request != "multiple_choice":
        fail("calibration", "needs choice probabilities: request must be multiple_choice")
    f = spec.fewshot
    if f.shots < 0 or f.max_shots < f.shots:
        fail("fewshot", f"needs 0 <= shots <= max_shots (got shots {f.shots}, max_shots {f.max_shots})")
    if f.max_shots and f.pool == "none":
        fail("fewshot.pool", "max_shots > 0 needs a pool of examples (first_per_group)")
    if f.pool == "first_per_group" and not spec.group_by:
        fail("group_by", "fewshot.pool first_per_group needs group_by")
    for key, template in spec.template_fields().items():
        try:
            _names_in(template)
        except ValueError as e:
            fail(key, f"is not a valid template ({e}); write a literal brace as {{{{ or }}}}")


def load_spec(path: Path) -> TaskSpec:
    import yaml

    from foresight.config import config_from_dict

    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ForesightError(f"cannot read task spec {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ForesightError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(table, dict):
        raise ForesightError(f"{path}: a task spec must be a mapping of keys to values, not {type(table).__name__}")
    if "path" in table:
        raise ForesightError(f"{path}: field 'path': is set by the loader, not in the file")
    spec = config_from_dict(TaskSpec, table, source=str(path))
    spec.path = str(path)
    _check(spec, str(path))
    return spec


def task_names(tasks_dir: Path = TASKS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(tasks_dir).glob("*.yaml"))


def get_task(name: str, tasks_dir: Path = TASKS_DIR) -> TaskSpec:
    """The spec of a task by name, or an error naming the closest known names."""
    names = task_names(tasks_dir)
    if name not in names:
        match = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(repr(m) for m in match)}? " if match else ""
        raise ForesightError(f"unknown task {name!r}: {hint}known tasks: {', '.join(names)} "
                             f"(`foresight eval --list` describes them)")
    return load_spec(Path(tasks_dir) / f"{name}.yaml")


def all_tasks(tasks_dir: Path = TASKS_DIR) -> list[TaskSpec]:
    return [load_spec(Path(tasks_dir) / f"{n}.yaml") for n in task_names(tasks_dir)]
