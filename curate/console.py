"""Terminal output shared by the CLI and the demo: consoles, a progress spinner, step and table printing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table as RichTable

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from curate.lineage import Step

out_console = Console()
err_console = Console(stderr=True)


@contextmanager
def spinner(what: str) -> Iterator[None]:
    """A progress line with elapsed time on stderr while a long step runs (none when stderr is not a terminal)."""
    if not err_console.is_terminal:  # nothing would be drawn: no display to build (it costs a command ~10 ms)
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as p:
        p.add_task(what, total=None)
        yield


@contextmanager
def progress_bar(what: str, total: int | None, *, unit: str = "rows", enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (done/total, rate in `unit`/s, time left); yields `advance(n)`. Silent when not a terminal."""
    if not (enabled and err_console.is_terminal):
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn(f"{{task.fields[rate]}} {unit}/s"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err_console, transient=False) as p:
        task = p.add_task(what, total=total, rate="—")

        def advance(n: int) -> None:
            p.advance(task, n)
            speed = p.tasks[0].speed
            p.update(task, rate=f"{speed:,.1f}" if speed else "—")

        yield advance


def print_step(step: "Step", output: Path | str | None, console: Console = err_console) -> None:
    """What a step did: rows in, each drop reason with its count, rows out, warnings, and where it wrote."""
    from rich.markup import escape

    t = RichTable(title=f"curate {step.name}", show_header=True, title_justify="left")
    t.add_column("what")
    t.add_column("count", justify="right")
    if step.rows_in is not None:
        t.add_row("rows in", f"{step.rows_in:,}")
    for reason, n in step.dropped.items():
        t.add_row(escape(f"dropped ({step.units.get(reason, 'rows')}): {reason}"), f"{n:,}")
    if step.rows_out is not None:
        t.add_row("rows out", f"{step.rows_out:,}")
    console.print(t)
    for w in step.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if output is not None:
        console.print(f"wrote [bold]{output}[/]", highlight=False)


def print_frame(df: "pl.DataFrame", limit: int = 50, console: Console = out_console, title: str | None = None) -> None:
    """Print a DataFrame as a rich table (long text cut to one line)."""
    t = RichTable(show_header=True, title=title, title_justify="left")
    for name, dtype in df.schema.items():
        t.add_column(f"{name}\n[dim]{dtype}[/]", justify="right" if dtype.is_numeric() else "left", overflow="ellipsis", max_width=48)
    for row in df.head(limit).iter_rows():
        t.add_row(*[_cell(v) for v in row])
    console.print(t)
    shown = f"; showing {limit}, use --limit or -o" if df.height > limit else ""
    console.print(f"({df.height:,} rows{shown})")


def _cell(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("\n", " ")[:200]
