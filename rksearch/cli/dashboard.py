"""``rksearch dashboard``: optuna-dashboard on a study, safe beside a running search."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rksearch.cli._app import STORAGE_HELP, STUDY_DIR_HELP, app, err, out


@app.command()
def dashboard(
    study_dir: Path = typer.Argument(..., help=STUDY_DIR_HELP),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    read_only: bool = typer.Option(False, "--read-only",
                                   help="Refuse every change (deleting, renaming, notes, telling trials)."),
) -> None:
    """Serve optuna-dashboard on the study's storage until Ctrl-C."""
    from rksearch.analysis.dashboard import dashboard as open_dashboard

    board = open_dashboard(study_dir, host=host, port=port, storage=storage, read_only=read_only)
    if board.exposed and not board.read_only:
        err.print(f"warning: listening on {host}, beyond this machine: whoever reaches it can delete or rename "
                  "studies and change trials (optuna-dashboard has no login and no read-only mode of its own); "
                  "--read-only refuses every change", markup=False, highlight=False, soft_wrap=True)
    elif board.exposed:
        err.print(f"note: listening on {host}, beyond this machine, read-only: whoever reaches it can read the study",
                  markup=False, highlight=False, soft_wrap=True)
    s = board.study
    out.print(f"optuna-dashboard for {s.summary()}", markup=False, highlight=False, soft_wrap=True)
    if not board.wal:
        out.print("note: could not switch optuna.db to WAL mode; a search writing meanwhile may wait for it", markup=False, soft_wrap=True)
    out.print(f"open {board.url}", markup=False, highlight=False, soft_wrap=True)
    out.print("Ctrl-C to stop", markup=False, soft_wrap=True)
    try:
        board.serve_forever()
    except KeyboardInterrupt:
        out.print("stopped", markup=False, soft_wrap=True)
