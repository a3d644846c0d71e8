"""The plain baseline: exact parameter counts, the widest width under a budget, YOPO's split,
and training through the same retrain path as a front member."""

from __future__ import annotations

import pytest
import torch

from tamnas.supernets.plain import PlainNet, plain_params, plain_width, widest_within


def _numel(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("width,channels,classes", [(1, 1, 10), (3, 1, 10), (8, 3, 4), (13, 3, 100)])
def test_params_formula_matches_numel(width, channels, classes):
    net = PlainNet(width, channels, classes, [0.5] * channels, [0.25] * channels)
    assert plain_params(width, channels, classes) == _numel(net)


@pytest.mark.parametrize("budget", [500, 2000, 20_000, 33_000, 1_000_000])
def test_width_is_the_widest_that_fits_the_budget(budget):
    w = plain_width(budget, 1, 10)
    assert plain_params(w, 1, 10) <= budget < plain_params(w + 1, 1, 10)


@pytest.mark.parametrize("answer", [None, 1, 2, 3, 7, 8, 9, 100, 4095, 4096])
@pytest.mark.parametrize("upper", [1, 5, 64, 4096])
def test_widest_within_finds_the_last_fitting_width_and_never_probes_far_beyond(answer, upper):
    calls = []

    def fits(w: int) -> bool:
        calls.append(w)
        return answer is not None and w <= answer

    brute = max((w for w in range(1, upper + 1) if fits(w)), default=None)
    calls.clear()
    assert widest_within(fits, upper) == brute
    assert all(1 <= w <= upper for w in calls)          # no width outside 1..upper is built
    assert max(calls) <= 2 * max(brute or 1, 1)         # doubling overshoots by at most 2x
    assert len(calls) <= 2 * (brute or 1).bit_length() + 1


def test_a_budget_below_the_smallest_net_is_one_line():
    with pytest.raises(ValueError, match=r"params<=100: the smallest plain net .* raise the budget"):
        plain_width(100, 1, 10)


def test_yopo_split_is_the_forward_and_normalises_inside():
    torch.manual_seed(0)
    net = PlainNet(4, 3, 5, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]).eval()
    x = torch.rand(6, 3, 16, 16)
    out = net(x)
    assert out.shape == (6, 5)
    torch.testing.assert_close(net.forward_from_first(net.first_layer(x)), out, rtol=0, atol=0)
    # the first layer is normalisation + a bare conv: conv((x - mean) / std)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((x - mean) / std, net.first_layer.conv.weight, padding=1)
    torch.testing.assert_close(net.first_layer(x), ref, rtol=1e-5, atol=1e-5)


def test_plain_net_trains_through_retrain_with_the_runs_recipe(tmp_path):
    from tamnas.config import load_config
    from tamnas.data import load_data
    from tamnas.supernets import build_space
    from tamnas.train import retrain

    cfg = load_config("quickstart")
    cfg.data.resolution, cfg.data.train_limit, cfg.data.val_size = 8, 128, 50
    cfg.retrain.epochs, cfg.retrain.batches_per_epoch = 1, 2
    cfg.train.yopo_m, cfg.train.yopo_n = 2, 1
    data = load_data(cfg.data, cfg.seed)
    info = data.info
    made = []

    def build() -> PlainNet:
        made.append(PlainNet(2, info.in_channels, info.num_classes, info.mean, info.std))
        made.append({k: v.clone() for k, v in made[-1].state_dict().items()})
        return made[-2]

    out = retrain(cfg, build_space(cfg), None, tmp_path / "a", torch.device("cpu"), data=data,
                  quiet=True, build=build)
    net, before = made
    assert out is net and (tmp_path / "a" / "train_log.csv").is_file()
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert "first_layer.conv.weight" in changed and "fc.weight" in changed
    # built after the seed is set: what the process drew before does not change the net
    torch.rand(1000)
    again = retrain(cfg, build_space(cfg), None, tmp_path / "b", torch.device("cpu"), data=data,
                    quiet=True, build=build)
    assert all(torch.equal(v, made[3][k]) for k, v in before.items())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())
