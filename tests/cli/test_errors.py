"""Bad input, everywhere: one clear line naming the file and field, exit 2, nothing written."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from helpers import GOOD_SPACE, snapshot
from rksearch import parse_name, save_spec

ROOT = Path(__file__).resolve().parents[2]



def files(tmp: Path) -> dict[str, Path]:
    """Every kind of bad file, made fresh in ``tmp``."""
    made = {
        "malformed.yaml": "periods: [\n",
        "unknown_key.yaml": GOOD_SPACE + "\nbudget: 3\n",
        "wrong_type.yaml": GOOD_SPACE.replace("trials: 12", "trials: eight"),
        "bad_range.yaml": GOOD_SPACE.replace("stages: {min: 2, max: 4}", "stages: {min: 5, max: 2}"),
        "no_candidate.yaml": GOOD_SPACE.replace("max_flops: 12M", "max_flops: 1k"),
        "missing_root.yaml": GOOD_SPACE.replace("dataset: demo", "dataset: imagefolder\n  root: no/such/folder"),
        "spec_unknown_key.yaml": "rknet: 1\ncolour: red\nperiods: [{method: erk, stages: 2, growth_rate: 4}]\n",
        "spec_wrong_type.yaml": "rknet: 1\nperiods: [{method: erk, stages: two, growth_rate: 4}]\n",
        "not_a_spec.yaml": GOOD_SPACE,
        "bad_baselines.yaml": GOOD_SPACE + "\nbaselines: [densenet-bc-16-k4, resnet50]\n",
        "many_gpus.yaml": GOOD_SPACE.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 1, gpu: 64}"),
        "too_many_cpus.yaml": GOOD_SPACE.replace("resources: {cpu: 1, gpu: 0}", "resources: {cpu: 4096, gpu: 0}"),
        "baseline_no_blocks.yaml": "baseline: densenet\ngrowth_rate: 4\n",
        "dup_key.yaml": GOOD_SPACE + "\nname: other\n",
        "unknown_dataset.yaml": GOOD_SPACE.replace("dataset: demo", "dataset: mnist"),
        "val_too_big.yaml": GOOD_SPACE.replace("dataset: demo", "dataset: demo\n  val_size: 100000"),
        "wrong_size.yaml": GOOD_SPACE.replace("input_size: 32", "input_size: 64"),
        "small_grid.yaml": GOOD_SPACE.replace("sampler: tpe", "sampler: grid").replace("count: [2, 3]", "count: 2")
        .replace("stages: {min: 2, max: 4}", "stages: 2").replace("m: [1, 2]", "m: 1").replace(
            "method: [erk, irk]", "method: erk").replace("bottleneck: [false, true]", "bottleneck: false"),
        "markup[v2].yaml": GOOD_SPACE.replace("objectives: [accuracy, flops]", "objectives: []"),
    }
    out = {}
    for name, text in made.items():
        p = tmp / name
        p.write_text(text)
        out[name] = p
    save_spec(parse_name("IRKNet-2x1_2x1", growth_rate=4), tmp / "good_spec.yaml")
    out["good_spec.yaml"] = tmp / "good_spec.yaml"
    (tmp / "empty_dir").mkdir()
    out["empty_dir"] = tmp / "empty_dir"
    corrupt = tmp / "corrupt" / "demo"
    corrupt.mkdir(parents=True)
    (corrupt / "optuna.db").write_bytes(b"this is not sqlite, just bytes" * 100)
    out["corrupt_study"] = corrupt
    return out


# (command, file key or None, extra args, text the message must hold)
CASES = [
    ("describe", "malformed.yaml", [], "malformed YAML at line"),
    ("describe", "spec_unknown_key.yaml", [], "colour: unknown key"),
    ("describe", "spec_wrong_type.yaml", [], "periods.0.stages"),
    ("describe", "not_a_spec.yaml", [], "not an RKNet spec"),
    ("space", "malformed.yaml", [], "malformed YAML"),
    ("space", "unknown_key.yaml", [], "budget"),
    ("space", "wrong_type.yaml", [], "search.trials"),
    ("space", "bad_range.yaml", [], "periods.stages"),
    ("space", "dup_key.yaml", [], "key 'name' given twice"),
    ("space", "unknown_dataset.yaml", [], "proxy.dataset: unknown dataset 'mnist'; choose one of demo"),
    ("run", "not_a_spec.yaml", ["--set", "proxy.epoch=2"], "--set proxy.epoch: 2: unknown key"),  # the good space
    ("run", "not_a_spec.yaml", ["--set", "proxy.epochs=two"], "--set proxy.epochs: 'two': Input should be a valid int"),
    ("run", "not_a_spec.yaml", ["--dataset", "mnist"], "--dataset: 'mnist': unknown dataset 'mnist'; choose one of"),
    ("space", "not_a_spec.yaml", ["--set", "name.x=1"], "--set name.x: name is 'demo' in"),
    ("zc", None, ["{tmp}/not_a_spec.yaml", "--sample", "1", "--set", "proxy"], "--set: expected KEY=VALUE with a dotted"),
    ("calibrate", "not_a_spec.yaml", ["--set", "proxy.val_size=-1"], "--set proxy.val_size: -1: Input should be greater"),
    ("run", "malformed.yaml", [], "malformed YAML"),
    ("run", "unknown_key.yaml", [], "budget"),
    ("run", "wrong_type.yaml", [], "search.trials"),
    ("run", "bad_range.yaml", [], "periods.stages"),
    ("run", "no_candidate.yaml", [], "constraints"),
    ("run", "missing_root.yaml", [], "proxy.root"),
    ("run", "good_spec.yaml", [], ""),
    ("run", "corrupt_space", [], "database"),
    ("space", "bad_baselines.yaml", [], "baselines.1: unknown baseline 'resnet50'"),
    ("run", "bad_baselines.yaml", [], "baselines.1: unknown baseline 'resnet50'"),
    ("run", "too_many_cpus.yaml", [], "search.resources.cpu: each trial asks for 4096 CPU"),
    ("run", "val_too_big.yaml", [], "proxy.val_size: 100000 leaves no training images"),
    ("run", None, ["{tmp}/not_a_spec.yaml", "--address", "127.0.0.1:1"], "--address: cannot reach a Ray cluster at 127.0"),
    ("run", "wrong_size.yaml", [], "network.input_size: is 64 but demo images are 32x32"),
    ("run", "many_gpus.yaml", ["--set", "search.resources.gpu=64"],  # pinned: no move to the CPU
     "search.resources.gpu: each trial asks for 1 CPU and 64 GPU"),
    ("run", "small_grid.yaml", [], "search.trials: 12 trials, but the grid holds 3 feasible specs and trains each once"),
    ("run", "small_grid.yaml", ["--trials", "5"], "--trials: 5 trials, but the grid holds 3"),
    ("space", "markup[v2].yaml", [], "markup[v2].yaml: objectives: expected a list such as [accuracy, flops]"),
    ("train", "malformed.yaml", ["--dataset", "demo"], "malformed YAML"),
    ("train", "not_a_spec.yaml", ["--dataset", "demo"], "not an RKNet spec"),
    ("train", "spec_wrong_type.yaml", ["--dataset", "demo"], "periods.0.stages"),
    ("train", "good_spec.yaml", ["--dataset", "imagefolder", "--data-root", "no/such/folder"], "no/such/folder"),
    ("train", "good_spec.yaml", ["--dataset", "imagenet9000"], "imagenet9000"),
    ("train", "baseline_no_blocks.yaml", ["--dataset", "demo"], "block_config: Field required"),
    ("train", None, ["resnet50", "--dataset", "demo"], "resnet50: no such spec file, not an RKNet name"),
    ("pareto", "empty_dir", [], "optuna.db"),
    ("pareto", "corrupt_study", [], "not an SQLite database"),
    ("pareto", "good_spec.yaml", [], "study folder"),
    ("export", "empty_dir", ["--pick", "knee", "-o", "{tmp}/best.yaml"], "optuna.db"),
    ("export", "corrupt_study", ["--pick", "knee", "-o", "{tmp}/best.yaml"], "not an SQLite database"),
    ("dashboard", "empty_dir", [], "optuna.db"),
    ("dashboard", "corrupt_study", [], "not an SQLite database"),
    ("bench", None, ["IRKNet-1x1"], "periods.0.stages"),
    ("export", None, ["{tmp}/studies/demo"], "Missing option '-o' / '--output'"),  # the command line's own errors
    ("dashboard", None, ["{tmp}/studies/demo", "--port", "99999"], "Invalid value for '--port'"),
    ("train", None, ["densenet-bc-10-k4", "--dataset", "demo", "--device", "cuda", "--out", "{tmp}/r"], "--device"),
    ("bench", "not_a_spec.yaml", [], "not an RKNet spec"),
    ("bench", None, ["IRKNet-2x1", "--device", "cuda"], "CUDA is not available"),
]


NEEDS_RAY = {("run", "too_many_cpus.yaml"), ("run", "many_gpus.yaml")}
"""Cases refused once Ray tells the cluster's resources (marked slow: Ray starts for them); the
rest are refused before Ray starts."""
OWN_PROCESS = {("run", "too_many_cpus.yaml")}
"""The installed entry point in a process of its own, a cold start and a Ray of its own: exit
status 2 and one line from ``python -m rksearch`` itself. The other cases run in this process
(``rksearch_cli``), a fraction of a second each; ``many_gpus`` on the session's Ray."""


def case(command: str, key: str | None, extra: list[str], needle: str):
    return pytest.param(command, key, extra, needle, id=f"{command}-{key or extra[0]}",
                        marks=[pytest.mark.slow] if (command, key) in NEEDS_RAY else [])




@pytest.mark.parametrize("command, key, extra, needle", [case(*c) for c in CASES])
def test_bad_input(tmp_path: Path, request, rksearch, rksearch_cli, command: str, key: str | None, extra: list[str],
                   needle: str) -> None:
    if command in ("bench", "train") and "cuda" in extra:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    paths = files(tmp_path)
    args = [command]
    if key == "corrupt_space":  # a space whose study database is corrupt
        space = tmp_path / "demo.yaml"
        space.write_text(GOOD_SPACE)
        args += [str(space), "--out", str(tmp_path / "corrupt")]
    elif key is not None:
        args.append(str(paths[key]))
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if command == "run" and key != "corrupt_space":
        args += ["--out", str(tmp_path / "studies")]
    own_process = (command, key) in OWN_PROCESS
    if (command, key) in NEEDS_RAY and not own_process:
        request.getfixturevalue("ray_session")
    before = snapshot(tmp_path)
    r = rksearch(*args, cwd=tmp_path, timeout=300) if own_process else rksearch_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]
    if key is not None and key not in ("good_spec.yaml", "empty_dir", "corrupt_study", "corrupt_space"):
        assert str(paths[key]) in lines[0] or key.split(".")[0] in lines[0], lines[0]
    assert snapshot(tmp_path) == before  # nothing written or overwritten


def test_dashboard_port_in_use(tmp_path: Path, monkeypatch, rksearch_cli) -> None:
    from study_factory import make_study  # a real study to serve

    from rksearch.analysis.dashboard import Dashboard

    monkeypatch.setattr(Dashboard, "serve_forever", lambda self: self.server.server_close())  # bound: never serve
    study_dir = make_study(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = rksearch_cli("dashboard", study_dir, "--port", port, cwd=tmp_path)
    assert r.returncode == 2
    assert f"port {port}" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_override_under_a_period_index_keeps_the_files_other_fields() -> None:
    from rksearch.space.overrides import parse_overrides
    from rksearch.space.search_space import load_space

    space = load_space(ROOT / "search_spaces" / "demo.yaml", parse_overrides(["periods.overrides.0.stages=3"]))
    assert set(space.periods.overrides[0]) == {"method", "stages"}  # the file's method: erk stays
