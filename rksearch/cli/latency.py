"""``rksearch latency``: a spec's inference latency on this machine, a space's latency table, and how FLOPs rank latency."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import typer

from rksearch.cli._app import SET_HELP, app, ints, load_space_with, out
from rksearch.core.errors import RKSearchError

REPORT_SAMPLE = 20  # specs a --report without --sample measures


def _is_space(target: str) -> bool:
    """A YAML file that is not a spec (no ``rknet:`` or ``baseline:`` key) is a search space."""
    from rksearch.core.yamlio import read_data

    path = Path(target)
    if not path.is_file() or path.suffix not in (".yaml", ".yml"):
        return False
    data = read_data(path)
    return not (isinstance(data, dict) and ("rknet" in data or "baseline" in data))


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _pages(html: Optional[Path], name: str, batches: list[int]) -> dict[int, Path]:
    """The report's page for each batch: ``--html`` (or ``<space>-latency.html``), ``-b<batch>`` added for several."""
    from rksearch.core.files import unwritable

    base = html or Path(f"{name}-latency.html")
    pages = {b: base if len(batches) == 1 else base.with_name(f"{base.stem}-b{b}{base.suffix}") for b in batches}
    for page in pages.values():
        why = unwritable(page)
        if why:
            raise RKSearchError(why, source=page, field="--html")
    return pages


@app.command()
def latency(
    target: str = typer.Argument(..., help="A spec file, an RKNet or baseline name (IRKNet-3x1_3x1_3x1, densenet-bc-100), or a search-space YAML file."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: a space's latency.device, else auto: cuda where there is one)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Images per forward pass; comma-separated for several (1,32), each its own device key (default: a space's latency.batch, else 1)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 or bf16 (autocast) (default: a space's latency.precision, else fp32)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch's threads while measuring (default: a space's latency.threads, else torch's default here)."),
    no_channels_last: bool = typer.Option(False, "--no-channels-last", help="Contiguous tensors instead of channels_last."),
    every: bool = typer.Option(False, "--all", help="A space: measure every feasible spec (resumable: what the table holds is skipped)."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="A space: measure this many feasible specs drawn uniformly (with --report: default 20)."),
    seed: int = typer.Option(0, "--seed", help="Seeds --sample's draw."),
    report: bool = typer.Option(False, "--report", help="A space: Spearman rho of FLOPs and params against latency on this device, and a Plotly scatter page."),
    html: Optional[Path] = typer.Option(None, "--html", help="--report's page (default: <space name>-latency.html here)."),
    table_dir: Optional[Path] = typer.Option(None, "--table-dir", help="The folder of the per-device tables (default: ~/.cache/rksearch/latency; $RKSEARCH_CACHE moves it)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Rounds of timed runs; the number is the fastest round's median (what else runs on the machine only adds time)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Inference latency of full-size networks on this machine, measured once per device key into a table."""
    from rksearch.arch.resolve import resolve_any_spec
    from rksearch.training.latency import Protocol, Settings, device_key
    from rksearch.training.latency_table import LatencyTable, latency_of

    space = load_space_with(target, sets, None, None) if _is_space(target) else None
    if space is None:
        for flag, given in (("--all", every), ("--sample", sample), ("--report", report), ("--set", sets),
                            ("--html", html)):
            if given:
                raise RKSearchError(f"takes a search-space file; {target} is a spec", field=flag)
        spec, base = resolve_any_spec(target), Settings()
    else:
        from rksearch.search.latency import settings_of

        if not (every or sample or report):
            raise RKSearchError("a space needs --all, --sample N or --report", source=target, field="--all")
        if every and sample:
            raise RKSearchError("give --all or --sample N, not both", field="--sample")
        base = settings_of(space)
    given = {"device": device, "precision": precision, "threads": threads}
    base = replace(base, **{k: v for k, v in given.items() if v is not None},
                   channels_last=base.channels_last and not no_channels_last)
    picked = ints(batch, "--batch") if batch is not None else base.batch
    batches = picked if isinstance(picked, list) else [picked]
    tables = [LatencyTable.for_key(device_key(replace(base, batch=b).checked()), table_dir) for b in batches]
    protocol = Protocol(rounds=rounds)
    if space is None:
        rows = []
        for table in tables:
            lat, now = latency_of(table, spec, protocol)
            rows.append({"name": spec.name, "key": table.key.to_dict(), "table": str(table.path), **asdict(lat),
                         "measured_now": now})
            if not as_json:
                _say(f"{spec.name}, batch {table.key.batch}: {lat.line()}; {'measured now' if now else 'from the table'}")
                _say(f"  device key: {table.key.text()}")
                _say(f"  table: {table.path}")
        if as_json:
            print(json.dumps({"specs": rows}))
        return
    _space(space, tables, every, sample, seed, report, html, as_json, protocol)


def _space(space, tables, every: bool, sample: Optional[int], seed: int, report: bool, html: Optional[Path],
           as_json: bool, protocol) -> None:
    """``rksearch latency SPACE.yaml --all | --sample N | --report``."""
    from rksearch.search.latency_space import latency_report, measure_specs, space_specs

    pages = _pages(html, space.name, [t.key.batch for t in tables]) if report else {}
    specs = space_specs(space, every=every, sample=sample or (REPORT_SAMPLE if not every else None), seed=seed)
    result = {"space": space.name, "tables": []}
    for table in tables:
        def each(i: int, m) -> None:
            if not as_json:
                _say(f"[{i + 1}/{len(specs)}] {m.spec.name}: {m.latency.median_ms:.3f} ms "
                     f"({'measured' if m.now else 'in the table'})")

        measured = measure_specs(specs, table, protocol, on_each=each)
        now = sum(m.now for m in measured)
        entry = {"key": table.key.to_dict(), "table": str(table.path), "specs": len(measured), "measured_now": now}
        if not as_json:
            _say(f"table {table.path}: {len(table)} specs of {table.key.text()}; this run measured {now}, "
                 f"found {len(measured) - now} in it")
        if report:
            entry.update(_report(space.name, latency_report(measured, table.key), pages[table.key.batch], as_json))
        result["tables"].append(entry)
    if as_json:
        print(json.dumps(result, allow_nan=False, default=lambda v: None))


def _report(name: str, rep, page: Path, as_json: bool) -> dict:
    """The report's lines, and its page written with plotly.js beside it."""
    import math

    from rksearch.analysis.plots import latency_figure
    from rksearch.analysis.report import write_plotlyjs
    from rksearch.core.files import write_text

    lines = rep.lines(name)
    fig = latency_figure(rep.rows, f"{name}: latency against FLOPs<br><sup>{rep.key.text()}; {lines[1]}</sup>")
    write_text(page, fig.to_html(include_plotlyjs="directory"))
    write_plotlyjs(page.resolve().parent)
    if not as_json:
        for line in lines:
            _say(line)
        _say(f"wrote {page} (and plotly.min.js beside it)")
    finite = {k: (v if not math.isnan(v) else None) for k, v in (("rho_flops", rep.rho_flops), ("rho_params", rep.rho_params))}
    return {**finite, "html": str(page), "rows": rep.rows}
