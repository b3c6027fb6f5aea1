"""DenseNet -> ERKNet and CliqueNet -> IRKNet (Section 3.3): the paper's networks, errors, the CLI."""
from __future__ import annotations

import json

import pytest

from rksearch import RKSearchError, build_model, count, load_spec, parse_name
from rksearch.arch.baselines import BaselineSpec, baseline_spec
from rksearch.cli import main
from rksearch.arch.convert import convert

IMAGENET = {"stem": "imagenet", "input_size": 224, "num_classes": 1000, "multiscale": False}


def test_densenet121_is_the_table3_family() -> None:
    c = convert(baseline_spec("densenet121"))
    assert c.target == parse_name("ERKNet-3x1_3x1_3x1_1x1-B", growth_rate=32, m=[2, 4, 8, 16], **IMAGENET)
    assert [(b.in_width, b.layers, b.out_width) for b in c.blocks] == [
        (64, 6, 256), (128, 12, 512), (256, 24, 1024), (512, 16, 1024)]
    after = count(c.target)  # Table 3: 5.20 GFLOPs, 6.95 M params
    assert (round(after.flops / 1e9, 2), round(after.params / 1e6, 2)) == (5.20, 6.95)
    assert count(c.source).params == 7_978_856


@pytest.mark.parametrize("name, blocks, rknet, m3", [
    ("densenet169", "6,12,32,40", "ERKNet-3x1_3x1_4x1_2x1-B", 20),
    ("densenet201", "6,12,48,56", "ERKNet-3x1_3x1_6x1_2x1-B", 28),
])
def test_table3_rows_from_densenets_with_a_convertible_last_block(name: str, blocks: str, rknet: str, m3: int) -> None:
    """DenseNet-169/201's last blocks (32 growths) do not split into m3 = 20/28; the paper's rows have 40/56."""
    with pytest.raises(RKSearchError, match=f"block_config: block 3: 32 growths are not a multiple of m = {m3}"):
        convert(baseline_spec(name))
    spec = baseline_spec(name, block_config=[int(b) for b in blocks.split(",")])
    assert convert(spec).target == parse_name(rknet, growth_rate=32, m=[2, 4, 8, m3], **IMAGENET)


@pytest.mark.parametrize("name, fields, rknet, k", [
    ("cliquenet", {"T": 36, "growth_rate": 64}, "IRKNet-12x1_12x1_12x1", 64),
    ("cliquenet-t18-k80", {}, "IRKNet-6x1_6x1_6x1", 80),
    ("cliquenet-t15-k80-ab", {}, "IRKNet-5x1_5x1_5x1-AB", 80),  # Table 2: 2.17 GFLOPs, 1.40 M
    ("cliquenet-t15-k150-abc", {}, "IRKNet-5x1_5x1_5x1-AB", 150),  # Table 2: 7.62 GFLOPs, 4.87 M
    ("cliquenet-t8-k4", {"blocks": 2, "multiscale": False, "dropout": 0.2}, "IRKNet-4x1_4x1", 4),
])
def test_cliquenet_blocks_become_irk_periods(name: str, fields: dict, rknet: str, k: int) -> None:
    source = baseline_spec(name, **fields)
    c = convert(source)
    assert c.target == parse_name(rknet, growth_rate=k, multiscale=source.multiscale, dropout=source.dropout)
    assert [b.out_width for b in c.blocks] == [source.layers_per_block * k] * source.blocks
    assert c.blocks[0].in_width == 64


def test_table2_counts_of_converted_cliquenets() -> None:
    for name, gflops, mparams in (("cliquenet-t15-k80-ab", 2.17, 1.40), ("cliquenet-t15-k150-abc", 7.62, 4.87)):
        after = count(convert(baseline_spec(name)).target)
        assert abs(after.flops / 1e9 - gflops) <= 0.01 and abs(after.params / 1e6 - mparams) <= 0.01  # truncated


def test_converted_densenet_keeps_each_block_s_layers() -> None:
    """Period b's step has block b's layers, unit for unit; only the closing sum and the widths after it differ."""
    source = BaselineSpec.from_dict({"baseline": "densenet", "block_config": [4, 6], "growth_rate": 4})
    c = convert(source)
    assert c.target == parse_name("ERKNet-2x1_2x1-B", growth_rate=4, m=[2, 3], multiscale=False)
    dense, rk = build_model(source), build_model(c.target)
    blocks = [m for m in dense.features if hasattr(m, "units")]
    for block, period in zip(blocks, rk.periods):
        assert [p.shape for p in block.parameters()] == [p.shape for p in period[0].parameters()]
    assert rk.transitions[0].conv.weight.shape[:2] == (12, 8)  # was 24 -> 12 in the DenseNet


def test_changes_describe_the_rules() -> None:
    changes = convert(baseline_spec("densenet121")).changes
    assert changes[0] == ("block 0: the concatenation of the input and 6 growths (256 channels) becomes "
                          "y + h b_1 z_1 + h b_2 z_2 + h b_3 z_3 (64 channels), 3 groups of m = 2 growths")
    assert "transition 2: 1024 -> 512 channels becomes 256 -> 512" in changes
    assert changes[-1] == "postprocessor and classifier: 1024 -> 512 input channels"
    cl = convert(baseline_spec("cliquenet-t15-k150-abc")).changes
    assert cl[0] == "stem: 64 -> k = 150 output channels (Rule 1)"
    assert "y + v_1 + ... + v_5 (150 channels); its input narrows from 750" in cl[2]
    assert cl[-1].startswith("compression of the block features (C) is dropped")


@pytest.mark.parametrize("name, fields, message", [
    ("densenet-bc-100", {}, "block_config: block 1: 16 growths are not a multiple of m = 9 (input width 108 = 9 x k;"),
    ("densenet-40", {}, "init_channels: block 0: input width 16 is not a multiple of k = 12"),
    ("densenet121", {"compression": 0.6}, "compression: block 1: input width 153 is not a multiple of k = 32"),
    ("densenet121", {"bn_size": 2}, "bn_size: the RKNet bottleneck is 4k wide; this DenseNet's is 2k"),
    ("densenet121", {"block_config": [6, 12, 24, 15]}, "block_config: block 3: 15 growths are not a multiple of "
                                                        "m = 16 (input width 512 = 16 x k; Rules 2-3: s stages of m "
                                                        "growths each); 16 growths would convert"),
])
def test_what_the_rules_cannot_express(name: str, fields: dict, message: str) -> None:
    with pytest.raises(RKSearchError) as e:
        convert(baseline_spec(name, **fields))
    assert str(e.value).startswith(message)


# -- the CLI -------------------------------------------------------------------------------------


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, captured.err


def test_cli_table(capsys) -> None:
    rc, out, _ = cli(capsys, "convert", "densenet121")
    assert rc == 0
    assert "DenseNet-BC-121-k32  7.979 M params, 5.668 GFLOPs" in out
    assert "ERKNet-3x1_3x1_3x1_1x1-B  6.947 M params, 5.205 GFLOPs" in out
    assert "m = 2,4,8,16" in out and "What the rules changed:" in out


def test_cli_json_and_output(capsys, tmp_path) -> None:
    path = tmp_path / "irk.yaml"
    rc, out, _ = cli(capsys, "convert", "cliquenet", "--T", "36", "--k", "64", "-o", str(path), "--json")
    assert rc == 0
    info = json.loads(out)
    target = parse_name("IRKNet-12x1_12x1_12x1", growth_rate=64)
    assert info["target"]["name"] == "IRKNet-12x1_12x1_12x1" and info["target"]["params"] == count(target).params
    assert info["source"]["name"] == "CliqueNet-T36-k64" and info["output"] == str(path)
    assert [b["period"]["stages"] for b in info["blocks"]] == [12, 12, 12]
    assert load_spec(path) == target
    assert path.read_text().startswith("# IRKNet-12x1_12x1_12x1: converted from CliqueNet-T36-k64")


def test_cli_baseline_file_with_overrides(capsys, tmp_path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(baseline_spec("densenet169").to_yaml())
    rc, out, _ = cli(capsys, "convert", str(path), "--block-config", "6,12,32,40", "--json")
    assert rc == 0 and json.loads(out)["target"]["name"] == "ERKNet-3x1_3x1_4x1_2x1-B"
    rknet = tmp_path / "r.yaml"
    rknet.write_text(parse_name("ERKNet-2x1", growth_rate=4).to_yaml())
    rc, _, err = cli(capsys, "convert", str(rknet))
    assert rc == 2 and "is an RKNet spec already" in err


@pytest.mark.parametrize("args, message", [
    (["cliquenet", "--T", "13"], "--T: 13 layers do not split evenly over 3 blocks"),
    (["cliquenet", "--T", "3"], "--T: 3 layers over 3 blocks leave 1 per block"),
    (["densenet121", "--T", "12"], "--T: does not apply here"),
    (["densenet121", "-k", "0"], "-k: Input should be greater than or equal to 1"),
    (["densenet121", "--block-config", "6,x"], "--block-config: expected an integer"),
    (["resnet50"], "name: unknown baseline 'resnet50'"),
])
def test_cli_errors(capsys, args: list[str], message: str) -> None:
    rc, _, err = cli(capsys, "convert", *args)
    assert rc == 2 and message in err


def test_entry_point_error_is_one_line(rksearch) -> None:
    """The installed entry point, in a process of its own (conftest.py)."""
    r = rksearch("convert", "densenet-bc-100", timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: block_config: block 1: 16 growths") and r.stderr.count("\n") == 1
