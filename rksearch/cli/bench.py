"""``rksearch bench``."""
from __future__ import annotations

import json
from typing import Optional

import typer

from rksearch.core.errors import RKSearchError
from rksearch.cli._app import app, as_option, ints, out


@app.command()
def bench(
    name_or_spec: str = typer.Argument(..., help="An RKNet name such as IRKNet-3x1_3x1_3x1, a baseline name such as densenet-bc-100, a spec file, or resnet18."),
    growth_rate: Optional[str] = typer.Option(None, "--growth-rate", "-k", help="k, or one k per period (comma-separated)."),
    m: Optional[str] = typer.Option(None, "--m", help="m for ERK periods: one value or one per period (RKNets only)."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto (CUDA where there is one)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Default: 512 on CUDA, 32 on CPU."),
    amp: str = typer.Option("auto", "--amp", help="bf16 (autocast), off, or auto (bf16 on CUDA, as the trainer)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (forward and backward)."),
    compile_mode: str = typer.Option("default", "--compile-mode",
                                     help="default, reduce-overhead (CUDA graphs), max-autotune, ..."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Capture the whole eager training step in one CUDA graph."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="Default: on."),
    baseline: str = typer.Option("resnet18", "--baseline", help="resnet18 (timed in the same run) or none."),
    impl: str = typer.Option("concat", "--impl", help="concat (one conv per stage; the default), per-connection (the reference), "
                                             "unaligned (no channel padding on a GPU), align-in (pad inputs only), align-dense (padded outputs "
                                             "copied dense) or concat-copy (BN keeps a concatenated copy)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed steps first. Default: 5 on CUDA, 2 on CPU."),
    repeats: int = typer.Option(5, "--repeats", help="Timed repeats; the median is reported."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Steps per repeat. Default: 10 on CUDA, 1 on CPU."),
    clock: str = typer.Option("wall", "--clock", help="wall, or thread: CPU time of one-thread CPU runs (OMP_NUM_THREADS=1), "
                              "which a shared machine's other jobs hardly disturb."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Training-step throughput (forward, backward, SGD) on random inputs, against a CIFAR ResNet-18."""
    from rksearch.training.bench import BenchOptions, format_rows, run_bench

    opts = BenchOptions(
        device=device, batch_size=batch_size, amp=amp, compile=compile, compile_mode=compile_mode,
        cuda_graph=cuda_graph, channels_last=channels_last, warmup=warmup, repeats=repeats, steps=steps, clock=clock,
    )
    fields = {"m": ints(m, "--m")} if m is not None else {}
    try:
        result = run_bench(name_or_spec, ints(growth_rate, "--growth-rate"), impl=impl, baseline=baseline,
                           options=opts, **fields)
    except RKSearchError as e:
        raise as_option(e, {"growth_rate": "--growth-rate"}) from None
    if as_json:
        print(json.dumps(result))
        return
    rows = [result]
    if result["baseline"]:
        base = {k.removeprefix("baseline_"): v for k, v in result.items() if k.startswith("baseline_")}
        rows.append({"name": "ResNet-18", **base})
    settings = (
        f"{result['device_name']}, batch {result['batch_size']}, amp {result['amp']}, "
        f"compile {result['compile'] or 'off'}, CUDA graph {'on' if result['cuda_graph'] else 'off'}, "
        f"channels_last {'on' if result['channels_last'] else 'off'}, impl {result['impl']}, "
        f"median of {result['repeats']} x {result['steps']} steps" + (", thread CPU time" if result["clock"] == "thread" else "")
    )
    out.print(settings, highlight=False, soft_wrap=True)
    out.print(format_rows(rows), highlight=False, soft_wrap=True)
    if result["ratio"] is not None:
        out.print(f"images/s ratio to ResNet-18 (median of paired repeats): {result['ratio']:.2f}", highlight=False)
