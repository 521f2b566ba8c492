"""`curate demo`: the main job end to end on the bundled GSM8K 6-system data."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from curate.console import print_frame, print_step
from curate.errors import CurateError
from curate.export import export, weight_stats
from curate.pairing import pairs
from curate.report import Step
from curate.selection import select
from curate.sql import sql
from curate.steps import run_step

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
DEFAULT_DATA = EXAMPLES / "gsm8k_6systems.parquet"


def run_demo(out: Path, data: Path | None = None, *, console: Console) -> dict[str, Path]:
    """validate → SQL accuracy table → pairs correct-vs-incorrect → select → export TRL jsonl + HF folder."""
    data = Path(data) if data is not None else DEFAULT_DATA
    if not data.exists():
        raise CurateError(f"{data}: demo data not found; pass --data SAMPLES (a samples file with `correct`).")
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "samples": out / "samples.parquet",
        "pairs": out / "pairs.parquet",
        "selected": out / "pairs_selected.parquet",
        "trl_jsonl": out / "pairs_trl.jsonl",
        "hf": out / "pairs_hf",
    }
    console.rule(f"curate demo on {data.name}")
    steps: list[tuple[Step, Path]] = []
    steps.append((run_step("ingest", {}, data, "samples", lambda f, s: f, paths["samples"]), paths["samples"]))

    acc = sql(
        "SELECT model, count(*) AS responses, round(avg(correct::int), 4) AS accuracy FROM samples GROUP BY 1 ORDER BY 1",
        samples=paths["samples"],
    )
    print_frame(acc, console=console, title="per-model accuracy (curate sql)")

    params = {"strategy": "correct-vs-incorrect", "seed": 0}
    steps.append(
        (run_step("pairs", params, paths["samples"], "samples", lambda f, s: pairs(f, strategy="correct-vs-incorrect", step=s), paths["pairs"]), paths["pairs"])
    )
    sel = {"where": "chosen_model <> 'gold'", "normalize_weights": "mean"}
    steps.append((run_step("select", sel, paths["pairs"], "pairs", lambda f, s: select(f, step=s, **sel), paths["selected"]), paths["selected"]))
    for step, path in steps:
        print_step(step, path, console=console)

    trl = export(paths["selected"], paths["trl_jsonl"], "jsonl", trl=True)
    hf = export(paths["selected"], paths["hf"], "hf")

    selected = sql("SELECT * FROM pairs", pairs=paths["selected"])
    summary = RichTable(title="demo summary", title_justify="left")
    summary.add_column("output")
    summary.add_column("rows", justify="right")
    summary.add_column("path")
    for step, path in steps:
        summary.add_row(step.name, f"{step.rows_out:,}", str(path))
    summary.add_row("export TRL jsonl", f"{trl.rows:,}", trl.path)
    summary.add_row("export Hub dataset folder (data/ shards + README.md card)", f"{hf.rows:,}", hf.path)
    console.print(summary)
    stats = weight_stats(selected)
    if stats:
        console.print("weights (difficulty_weight, normalised to mean 1): " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items()))
    console.print(f"Train on it with TRL: load_dataset('json', data_files='{trl.path}'), or load_dataset('{hf.path}'); "
                  "the weights need `curate train` or curate.trl.WeightedDPOTrainer.")
    paths.update(train_tiny(out, paths["selected"], data, console=console))
    if "tiny_model" in paths:
        paths.update(model_stages(out, data, paths["tiny_model"], console=console))
    return paths


def train_tiny(out: Path, pairs_path: Path, samples_path: Path, *, console: Console, steps: int = 8) -> dict[str, Path]:
    """Train a tiny Llama (built offline here) for a few weighted-DPO steps on the demo pairs."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        console.print("[yellow]skipping the training step:[/] install the `train` extra (torch, transformers) to run it.")
        return {}
    import polars as pl

    from curate.cli import print_metrics
    from curate.models.tiny import build_tiny_llama
    from curate.train import TrainConfig, Trainer

    console.rule("weighted DPO on a tiny Llama (random init, built offline)")
    texts = pl.read_parquet(samples_path, columns=["prompt", "response"]).head(400)
    model = build_tiny_llama(out / "tiny_llama", texts=texts["prompt"].to_list() + texts["response"].to_list())
    cfg = TrainConfig(data=str(pairs_path), model=str(model), output_dir=str(out / "tiny_dpo"), loss="dpo", learning_rate=1e-3,
                      batch_size=8, max_steps=steps, warmup_ratio=0.0, max_length=192, max_prompt_length=96)  # fmt: skip
    result = Trainer(cfg).train()
    print_metrics(result.metrics, console=console, every=1)
    console.print(f"trained model, checkpoints and metrics.jsonl in {result.output_dir} (reference log-probs: {result.reference_source})")
    return {"tiny_model": model, "trained": result.output_dir}


def model_stages(out: Path, samples_path: Path, model: Path, *, console: Console, n_prompts: int = 8) -> dict[str, Path]:
    """sample → verify → reward → logps → pairs (DCRM) → export → train, all on tiny offline models."""
    import polars as pl

    import curate
    from curate.cli import print_metrics
    from curate.io import write
    from curate.models.engines import Sampling, make_engine, model_name
    from curate.models.stages import LogpScorer, RewardModel, logps_shard, reward_shard, sample_shard
    from curate.models.tiny import build_tiny_llama
    from curate.models.verify import verify_frame
    from curate.train import TrainConfig, Trainer

    console.rule("model stages on tiny models: sample → verify → reward → logps → pairs → export → train")
    d = out / "stages"
    prompts = pl.read_parquet(samples_path).unique("prompt_id", keep="first", maintain_order=True).head(n_prompts)
    prompts = prompts.select("prompt_id", "prompt", "gold").with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))
    engine = make_engine("auto", model)
    samples = sample_shard(prompts, engine, Sampling(n=4, temperature=1.0, max_tokens=32, seed=0), model_name(model))
    samples = samples.filter(pl.col("response").str.strip_chars() != "")  # a random model may stop at once
    samples = verify_frame(samples, "math")
    rm_path = build_tiny_llama(out / "tiny_reward_model", reward_model=True)
    samples = reward_shard(samples, RewardModel(rm_path))
    scorer = LogpScorer(model)
    samples = logps_shard(samples, scorer, scorer)  # the policy is its own reference at the start
    write(samples, d / "samples.parquet")
    pairs = curate.pairs(curate.read(d / "samples.parquet"), strategy="best-of-n2").collect()
    write(pairs, d / "pairs.parquet")
    done = curate.export(d / "pairs.parquet", d / "pairs_trl.jsonl", "jsonl", trl=True)
    cfg = TrainConfig(data=str(d / "pairs.parquet"), model=str(model), output_dir=str(d / "dpo"), loss="dpo", learning_rate=1e-3,
                      batch_size=2, max_steps=3, warmup_ratio=0.0, max_length=512, max_prompt_length=448)  # fmt: skip
    result = Trainer(cfg).train()
    summary = RichTable(title="tiny end-to-end", title_justify="left")
    for col in ("stage", "rows", "notes"):
        summary.add_column(col)
    summary.add_row(f"sample ({engine.name})", str(samples.height), f"{n_prompts} GSM8K prompts x 4")
    summary.add_row("verify (math-verify)", str(samples["correct"].sum()), "correct answers (random weights: expect 0)")
    summary.add_row("reward + logps", str(samples.height), "reward, logp, ref_logp, n_tokens, token_ids")
    summary.add_row("pairs best-of-n2 (DCRM)", str(pairs.height), "ref_*_logps carried: training loads no reference")
    summary.add_row("export TRL jsonl", str(done.rows), done.path)
    summary.add_row("train dpo", str(result.steps), f"reference log-probs: {result.reference_source}")
    console.print(summary)
    print_metrics(result.metrics, console=console, every=1)
    return {"stages": d}
