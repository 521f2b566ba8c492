"""Recipes: `curate run RECIPE.yaml` runs a list of curate commands, each reading an earlier step's output.

A recipe names its inputs and its steps:

    inputs:
      samples: ../data/gsm8k_6systems.parquet     # paths are relative to the recipe file
    steps:
      - run: pairs                                 # any curate command
        with: {strategy: correct-vs-incorrect}     # its options, as on the command line (- or _)
      - run: select                                # input: the previous step's output (or `input: NAME`)
        with: {where: "chosen_model <> 'gold'"}
      - id: card
        run: export
        with: {format: hf}

Outputs go to a work folder (`--workdir`, default next to the recipe: `<recipe>.work/`). A step runs
only when its output is missing or its fingerprint — the command, its options, the content of its
input files (or the fingerprint of the step that made them) and curate's version — changed since it
last succeeded; the fingerprints are kept in `<workdir>/.curate_run.json`, written after each step.
Each command writes its output atomically, so a recipe killed mid-step is safe to run again: the
finished steps are skipped and the others produce what an uninterrupted run would. Option values
may name another output as `${step_id}` (or an input as `${name}`), e.g. `model: ${models}/policy`.
A recipe is checked whole before anything runs; its errors name the line.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError

STATE = ".curate_run.json"
_REF = re.compile(r"\$\{([A-Za-z_][\w.-]*)\}")
INPUT_ARG = {"sql": None, "tiny-models": None, "scorers": None, "push": "folder"}  # commands whose first argument is not an input
FOLDER_OUTPUTS = {"train", "tiny-models"}
NOT_IN_RECIPES = {"run", "demo"}


class RecipeError(CurateError):
    """A recipe that cannot run, naming the file and line."""


@dataclass
class RecipeStep:
    id: str
    command: str
    inputs: list[str]  # names of recipe inputs or earlier steps
    options: dict[str, Any]
    output: str
    line: int
    refs: list[str] = field(default_factory=list)  # every input or step this one reads (inputs and ${...} references)


@dataclass
class Recipe:
    path: Path
    inputs: dict[str, Path]
    steps: list[RecipeStep]
    title: str = ""


class _LineLoader:
    """YAML with the line of every mapping (the `__line__` key) for error messages."""

    @staticmethod
    def load(text: str, path: Path) -> Any:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
            mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
            mapping["__line__"] = node.start_mark.line + 1
            mapping["__lines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
            return mapping

        Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
        try:
            return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "?"
            raise RecipeError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}).") from None


def _option_names(cmd: Any) -> dict[str, Any]:
    """Option spellings of a click command (long names without dashes, with `-` and `_`) -> the click parameter.

    Positional arguments that are not the input (e.g. `sql`'s QUERY) are given by their name too.
    """
    out = {}
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    for p in cmd.params:
        if p.param_type_name == "argument":
            if INPUT_ARG.get(cmd.name, "first") is None or p is not args[0]:
                out[p.name] = p
            continue
        for opt in [*p.opts, *p.secondary_opts]:
            if opt.startswith("--"):
                out[opt[2:]] = p
                out[opt[2:].replace("-", "_")] = p
    return out


def load_recipe(path: str | os.PathLike, commands: dict[str, Any]) -> Recipe:
    """Parse and check a recipe against `commands` (name -> click command): every command, option, input and reference."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file.")
    raw = _LineLoader.load(path.read_text(), path)
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise RecipeError(f"{path}:1: a recipe is a mapping with a non-empty `steps` list (and optional `inputs`).")
    unknown = sorted(set(raw) - {"inputs", "steps", "title", "description", "__line__", "__lines__"})
    if unknown:
        raise RecipeError(f"{path}:{raw['__lines__'].get(unknown[0], 1)}: unknown recipe key `{unknown[0]}` (use inputs, steps, title).")
    base = path.parent
    inputs: dict[str, Path] = {}
    raw_inputs = raw.get("inputs") or {}
    for name, value in raw_inputs.items():
        if name.startswith("__"):
            continue
        line = raw_inputs["__lines__"].get(name, raw_inputs["__line__"])
        p = (base / str(value)).resolve() if not Path(str(value)).is_absolute() else Path(str(value))
        if not p.exists() and not any(ch in str(value) for ch in "*?["):
            raise RecipeError(f"{path}:{line}: input `{name}`: {value} does not exist (paths are relative to the recipe file).")
        inputs[name] = p
    steps: list[RecipeStep] = []
    seen = set(inputs)
    later = {s.get("id") or s.get("run") for s in raw["steps"] if isinstance(s, dict)}
    for k, item in enumerate(raw["steps"]):
        if not isinstance(item, dict) or "run" not in item:
            raise RecipeError(f"{path}:{getattr(item, 'get', lambda *_: None)('__line__') or '?'}: step {k + 1} needs `run: COMMAND`.")
        line, lines = item["__line__"], item["__lines__"]
        command = str(item["run"])
        if command not in commands or command in NOT_IN_RECIPES:
            raise RecipeError(f"{path}:{lines.get('run', line)}: unknown step `{command}`; a step runs one of: "
                              f"{', '.join(sorted(c for c in commands if c not in NOT_IN_RECIPES))}.")  # fmt: skip
        bad_keys = sorted(set(item) - {"id", "run", "input", "with", "output", "__line__", "__lines__"})
        if bad_keys:
            raise RecipeError(f"{path}:{lines.get(bad_keys[0], line)}: unknown key `{bad_keys[0]}` in a step (use id, run, input, with, output).")
        sid = str(item.get("id") or command)
        if sid in {s.id for s in steps} or sid in inputs:
            if item.get("id"):
                raise RecipeError(f"{path}:{lines.get('id', line)}: step id `{sid}` is used twice.")
            n = 2
            while f"{command}_{n}" in {s.id for s in steps}:
                n += 1
            sid = f"{command}_{n}"
        options = dict(item.get("with") or {})
        opt_lines = options.pop("__lines__", {})
        options.pop("__line__", None)
        known = _option_names(commands[command])
        for key in options:
            if str(key) not in known:
                raise RecipeError(f"{path}:{opt_lines.get(key, line)}: `{command}` has no option `{key}`; its options: "
                                  f"{', '.join(sorted({o for o in known if '_' not in o}))}.")  # fmt: skip
        arg = INPUT_ARG.get(command, "first")
        raw_input = item.get("input", None)
        if raw_input is None:
            names = [steps[-1].id] if (steps and arg is not None) else ([next(iter(inputs))] if (inputs and arg is not None) else [])
        else:
            names = [str(x) for x in (raw_input if isinstance(raw_input, list) else [raw_input])]
        names = [_REF.fullmatch(n).group(1) if _REF.fullmatch(n) else n for n in names]
        refs = list(names)
        for value in _strings(options):
            refs += _REF.findall(value)
        for name in refs:
            if name not in seen:
                where = lines.get("input", line) if name in names else line
                if name in later:
                    raise RecipeError(f"{path}:{where}: step `{sid}` reads `{name}`, which a later step makes: steps run in order, so "
                                      "this is a cycle (or the steps are out of order).")  # fmt: skip
                raise RecipeError(f"{path}:{where}: step `{sid}` reads `{name}`: no input or earlier step has that name "
                                  f"(known: {', '.join(sorted(seen)) or 'none'}).")  # fmt: skip
        if arg is None and raw_input is not None:
            raise RecipeError(f"{path}:{lines.get('input', line)}: `{command}` takes no input table; name files in `with` instead.")
        if arg is not None and not names:
            raise RecipeError(f"{path}:{line}: step `{sid}` has no input: declare `inputs:` or give `input:`.")
        output = str(item.get("output") or _default_output(sid, command, options))
        steps.append(RecipeStep(sid, command, names, options, output, line, refs))
        seen.add(sid)
    return Recipe(path=path, inputs=inputs, steps=steps, title=str(raw.get("title") or path.stem))


def _strings(options: dict[str, Any]) -> list[str]:
    out = []
    for v in options.values():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += [x for x in v if isinstance(x, str)]
        elif isinstance(v, dict):
            out += [x for x in v.values() if isinstance(x, str)]
    return out


def _default_output(sid: str, command: str, options: dict[str, Any]) -> str:
    if command in FOLDER_OUTPUTS:
        return sid
    if command == "report":
        return f"{sid}.html"
    fmt = options.get("format")
    if fmt in ("hf", "hub", "arrow"):
        return sid
    if fmt == "jsonl" or options.get("trl"):
        return f"{sid}.jsonl"
    return f"{sid}.parquet"


# --- running ------------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    step: RecipeStep
    argv: list[str]
    fingerprint: str
    action: str  # run | skip


class Runner:
    """Runs a recipe's steps in order in one work folder, skipping those whose fingerprint did not change.

    `commands` maps command names to click commands (for their options) and `invoke(argv)` runs one:
    the CLI passes its own, so this module never imports the CLI.
    """

    def __init__(self, recipe: Recipe, commands: dict[str, Any], invoke: Any, workdir: str | os.PathLike | None = None) -> None:
        self.recipe, self.commands, self.invoke = recipe, commands, invoke
        self.workdir = Path(workdir) if workdir is not None else recipe.path.with_name(recipe.path.stem + ".work")
        self.state_path = self.workdir / STATE
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"steps": {}, "hashes": {}}
        self.paths: dict[str, Path] = dict(recipe.inputs)
        for s in recipe.steps:
            self.paths[s.id] = self.workdir / s.output

    def _hash_external(self, p: Path) -> str:
        """Content hash of a file or folder outside the work folder, cached by size and modification time."""
        from curate.fingerprint import content_hash

        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        stamp = [p.is_dir(), *[(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]]
        key = str(p)
        cached = self.state["hashes"].get(key)
        if cached and cached["stamp"] == json.loads(json.dumps(stamp)):
            return cached["hash"]
        digest = content_hash([p])
        self.state["hashes"][key] = {"stamp": stamp, "hash": digest}
        return digest

    def _resolve(self, value: str) -> str:
        return _REF.sub(lambda m: str(self.paths[m.group(1)]), value)

    def argv(self, step: RecipeStep) -> list[str]:
        """The command line of a step, with its input(s), options and output."""
        known = _option_names(self.commands[step.command])
        argv = [step.command]
        if INPUT_ARG.get(step.command, "first") is not None:
            argv += [str(self.paths[n]) for n in step.inputs]
        for key, value in step.options.items():  # positional arguments first (e.g. sql's query)
            if known[str(key)].param_type_name == "argument":
                argv.append(self._resolve(str(value)))
        for key, value in step.options.items():
            param = known[str(key)]
            if param.param_type_name == "argument":
                continue
            flag = f"--{str(key).replace('_', '-')}" if f"--{str(key).replace('_', '-')}" in param.opts else param.opts[0]
            if isinstance(value, bool):
                if param.is_flag:
                    if value:
                        argv.append(flag)
                    elif param.secondary_opts:
                        argv.append(param.secondary_opts[0])
                    continue
                argv += [flag, str(value).lower()]
            elif isinstance(value, dict):  # --param / --loss-arg key=value
                for k, v in value.items():
                    if not str(k).startswith("__"):
                        argv += [flag, f"{k}={json.dumps(v) if not isinstance(v, str) else self._resolve(v)}"]
            elif isinstance(value, (list, tuple)):
                for v in value:
                    argv += [flag, self._resolve(str(v))]
            elif value is not None:
                argv += [flag, self._resolve(str(value))]
        out = str(self.paths[step.id])
        argv += [out] if step.command == "tiny-models" else ["-o", out]
        return argv

    def fingerprint(self, step: RecipeStep, argv: list[str], done: dict[str, str]) -> str:
        """What the step's output depends on: command, options, inputs' contents (or their makers' fingerprints), curate's version."""
        from curate import __version__
        from curate.fingerprint import digest

        deps = {}
        for name in step.refs:
            deps[name] = done.get(name) or (self._hash_external(self.paths[name]) if self.paths[name].exists() else "missing")
        for value in _strings(step.options):  # files named in options (a model folder, a capabilities table)
            resolved = self._resolve(value)
            p = (self.recipe.path.parent / resolved) if not Path(resolved).is_absolute() else Path(resolved)
            if not _REF.search(value) and p.exists() and not str(p.resolve()).startswith(str(self.workdir.resolve())):
                deps[value] = self._hash_external(p)
        wd = str(self.workdir)
        return digest({"command": step.command, "argv": [a.replace(wd, "$WORK") for a in argv], "deps": deps, "curate": __version__})

    def plan(self, *, force: bool = False, start: str | None = None, only: str | None = None) -> list[Plan]:
        ids = [s.id for s in self.recipe.steps]
        for name, opt in ((start, "--from"), (only, "--only")):
            if name is not None and name not in ids:
                raise RecipeError(f"{self.recipe.path}: {opt} {name}: no such step (steps: {', '.join(ids)}).")
        plans, done, forced = [], {}, False
        for s in self.recipe.steps:
            argv = self.argv(s)
            fp = self.fingerprint(s, argv, done)
            forced = forced or s.id == start
            prev = self.state["steps"].get(s.id, {})
            up_to_date = prev.get("fingerprint") == fp and self.paths[s.id].exists()
            action = "run" if (force or forced or not up_to_date) else "skip"
            if only is not None:
                action = "run" if s.id == only else "skip"
            plans.append(Plan(s, argv, fp, action))
            done[s.id] = fp
        return plans

    def run(self, *, force: bool = False, start: str | None = None, only: str | None = None, dry_run: bool = False, console: Any = None) -> list[Plan]:
        from curate.console import err_console

        console = console or err_console
        plans = self.plan(force=force, start=start, only=only)
        if only is not None:
            missing = [n for n in next(p.step for p in plans if p.step.id == only).inputs if not self.paths[n].exists()]
            if missing:
                raise RecipeError(f"--only {only}: its input {missing[0]} has not been made yet; run the recipe (or --from) first.")
        self._print_plan(plans, console, dry_run)
        if dry_run:
            return plans
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        n_skip = sum(p.action == "skip" for p in plans)
        if n_skip:
            console.print(f"{n_skip} of {len(plans)} steps up to date (same inputs, options and outputs); --force reruns them")
        for p in plans:
            if p.action == "skip":
                continue
            console.rule(f"step {p.step.id}: curate {' '.join(_short(a, self.workdir) for a in p.argv)}")
            t0 = time.perf_counter()
            argv = self._resuming(p)
            self.state["running"] = {"step": p.step.id, "fingerprint": p.fingerprint}
            self._save_state()
            code = self.invoke(argv)
            if code:
                raise RecipeError(f"{self.recipe.path}:{p.step.line}: step `{p.step.id}` (curate {p.step.command}) failed with exit code {code}; "
                                  "see above. The steps before it are kept; run the recipe again once it is fixed.")  # fmt: skip
            self.state["steps"][p.step.id] = {"fingerprint": p.fingerprint, "output": p.step.output, "seconds": round(time.perf_counter() - t0, 2)}
            self.state.pop("running", None)
            self._save_state()
        return plans

    def _resuming(self, p: Plan) -> list[str]:
        """The step's command line, with `--resume` when an earlier run of the very same step was interrupted.

        A model stage killed mid-run leaves its finished shards in `OUTPUT.shards` (a Ray job, its finished
        buckets in `.OUTPUT.curate-ray`): the same step resumes from them. Shards left by a step whose
        fingerprint has since changed are stale and removed, with a note.
        """
        from curate.console import err_console
        from curate.distributed import WORK_SUFFIX
        from curate.models.shards import shard_dir

        out = self.paths[p.step.id]
        leftovers = [f for f in (shard_dir(out), out.with_name(f".{out.name}{WORK_SUFFIX}")) if f.exists()]
        if not leftovers:
            return p.argv
        interrupted = self.state.get("running") == {"step": p.step.id, "fingerprint": p.fingerprint}
        takes_resume = "resume" in _option_names(self.commands[p.step.command]) and (
            "shard_size" in {q.name for q in self.commands[p.step.command].params} or "ray" in p.argv
        )
        if interrupted and takes_resume:
            err_console.print(f"step {p.step.id} was interrupted: resuming from {', '.join(f.name for f in leftovers)}", highlight=False)
            return [*p.argv, "--resume"]
        import shutil

        for f in leftovers:
            err_console.print(f"step {p.step.id}: removing {f.name}, left by an interrupted run with other inputs or options", highlight=False)
            shutil.rmtree(f)
        return p.argv

    def _save_state(self) -> None:
        from curate.sinks import atomic_path

        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(self.state, indent=1))

    def _print_plan(self, plans: list[Plan], console: Any, dry_run: bool) -> None:
        from rich.table import Table as RichTable

        t = RichTable(title=f"recipe {self.recipe.title} in {self.workdir}" + (" (dry run)" if dry_run else ""), title_justify="left")
        for col in ("step", "command", "reads", "writes", "action"):
            t.add_column(col)
        for p in plans:
            t.add_row(p.step.id, p.step.command, ", ".join(p.step.inputs) or "—", p.step.output, p.action)
        console.print(t)


def _short(arg: str, workdir: Path) -> str:
    return arg.replace(str(workdir) + os.sep, "")
