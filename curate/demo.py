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
    summary.add_row("export HF datasets folder (+ README.md card)", f"{hf.rows:,}", hf.path)
    console.print(summary)
    stats = weight_stats(selected)
    if stats:
        console.print("weights (difficulty_weight, normalised to mean 1): " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items()))
    console.print(f"Train on it with TRL: load_dataset('json', data_files='{trl.path}'), or datasets.load_from_disk('{hf.path}').")
    paths.update(train_tiny(out, paths["selected"], data, console=console))
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
