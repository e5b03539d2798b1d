import numpy as np
import pytest
import torch

from trqat.models import resnet20
from trqat.adapt import quantize
from trqat.quant import quantized_layers
from trqat import transitions
from trqat.transitions import TransitionCounter


def numpy_levels(w, s, bits):
    """Independent weight quantizer: x_int = round(clip(gamma w / s, alpha, beta)), sign for b=1."""
    w = w.astype(np.float32)
    if bits == 1:
        return np.where(w >= 0, 1, -1)
    half = 2 ** (bits - 1)
    return np.round(np.clip(w / np.float32(s) * np.float32(half), -half, half - 1))


def snapshot(layers):
    return [(m.weight.detach().numpy().copy(), m.weight_scale.item()) for m in layers]


def test_counts_match_independent_count():
    torch.manual_seed(0)
    model = quantize(resnet20(1, 4), 2, 2)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert counter.update() is None  # no previous levels yet
    for step in range(3):
        before = snapshot(layers)
        model(torch.randn(8, 1, 12, 12)).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()
        after = snapshot(layers)
        counts = counter.update()
        expected = [int((numpy_levels(w0, s0, 2) != numpy_levels(w1, s1, 2)).sum())
                    for (w0, s0), (w1, s1) in zip(before, after)]
        assert counts == expected
        assert sum(counts) > 0
    assert counter.update() == [0] * len(layers)  # nothing changed since the last call


def test_binary_counts_follow_sign_flips():
    torch.manual_seed(1)
    model = quantize(resnet20(1, 4), 1, 1)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    counter.update()
    with torch.no_grad():
        layers[0].weight[0, 0, 0, 0] *= -1
        layers[0].weight[1].neg_()
    counts = counter.update()
    assert counts[0] == 1 + layers[0].weight[1].numel()  # kaiming-normal weights are never 0
    assert sum(counts[1:]) == 0


def test_state_is_one_byte_per_weight_and_round_trips():
    model = quantize(resnet20(1, 4), 3, 3)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    assert counter.state_dict() == {"prev": None}
    counter.update()
    assert counter.numels == [m.weight.numel() for m in layers]
    assert all(p.dtype == torch.int8 and p.numel() == n for p, n in zip(counter.prev, counter.numels))
    other = TransitionCounter(layers)
    other.load_state_dict(counter.state_dict())
    with torch.no_grad():
        layers[2].weight.mul_(-1)
    assert other.update() == counter.update()


class EagerGraph(transitions.CountGraph):
    """CountGraph with its capture and replay done by running body() eagerly: the stand-in for a GPU
    (CI has none; python/tests/test_cuda.py checks the real capture on one). `wrong` adds 1 to the
    first layer's count of every replay, and `stale` keeps the old levels, as broken captures would."""
    wrong = False
    stale = False  # the right counts, but the stored levels left as they were
    replays = 0

    def _record(self):
        self.counts = self.body()

    def _replay(self):
        type(self).replays += 1
        kept = [p.clone() for p in self.prev]
        self.counts.copy_(self.body() + torch.tensor([int(self.wrong)] + [0] * (len(self.layers) - 1)))
        if self.stale:
            for p, k in zip(self.prev, kept):
                p.copy_(k)


@pytest.fixture
def eager_graph(monkeypatch):
    monkeypatch.setattr(transitions, "CountGraph", EagerGraph)
    monkeypatch.setattr(transitions, "graphs_available", lambda layers: True)
    monkeypatch.setattr(EagerGraph, "replays", 0)
    return EagerGraph


def counted_resnet20():
    """A W2A2 ResNet-20, its quantized layers, and a counter after its first update (levels stored)."""
    model = quantize(resnet20(1, 4), 2, 2)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    assert counter.update() is None
    return model, layers, counter


def train_steps(model, layers, counter, steps, seed=0):
    """SGD steps on random batches; for each, counter.update() and the independent count."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = []
    for _ in range(steps):
        before = snapshot(layers)
        model(torch.randn(8, 1, 12, 12)).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()
        after = snapshot(layers)
        expected = [int((numpy_levels(w0, s0, 2) != numpy_levels(w1, s1, 2)).sum())
                    for (w0, s0), (w1, s1) in zip(before, after)]
        out.append((counter.update(), expected))
    return out


def test_the_graph_path_counts_as_the_eager_one(eager_graph):
    model, layers, counter = counted_resnet20()
    assert isinstance(counter.graph, EagerGraph)
    prev = counter.prev
    for counts, expected in train_steps(model, layers, counter, 3):
        assert counts == expected and sum(counts) > 0
    assert eager_graph.replays == 3 and counter.prev is prev  # the graph's levels, updated in place
    assert counter.update() == [0] * len(layers)


def test_a_replaced_weight_or_a_loaded_state_captures_the_graph_again(eager_graph):
    model, layers, counter = counted_resnet20()
    first = counter.graph
    before = snapshot(layers)
    layers[1].weight.data = -layers[1].weight.detach().clone()  # a new tensor: the graph reads the old one
    (w0, s0), (w1, s1) = before[1], snapshot(layers)[1]
    counts = counter.update()
    assert counts[1] == int((numpy_levels(w0, s0, 2) != numpy_levels(w1, s1, 2)).sum()) > 0
    assert sum(counts[:1] + counts[2:]) == 0 and eager_graph.replays == 0
    assert counter.graph is not None and counter.graph is not first
    state = counter.state_dict()
    counter.load_state_dict(state)
    assert counter.graph is None
    assert counter.update() == [0] * len(layers) and counter.graph is not None


@pytest.mark.parametrize("broken", ["wrong", "stale"])
def test_a_graph_that_disagrees_with_the_eager_count_is_dropped(eager_graph, monkeypatch, caplog, broken):
    monkeypatch.setattr(EagerGraph, broken, True)
    model, layers, counter = counted_resnet20()
    results = train_steps(model, layers, counter, 3)
    assert all(counts == expected for counts, expected in results)
    assert "differ from the eager count" in caplog.text
    assert ("stored levels" in caplog.text) == (broken == "stale")
    assert counter.graph is None and counter.graph_failed and eager_graph.replays == 1


def test_replays_are_checked_until_one_saw_transitions(eager_graph, monkeypatch):
    checks = []
    monkeypatch.setattr(EagerGraph, "replay", lambda self: checks.append(self.checks_left) or super(EagerGraph, self).replay())
    model, layers, counter = counted_resnet20()
    assert counter.update() == [0] * len(layers) and counter.update() == [0] * len(layers)  # nothing moved yet
    train_steps(model, layers, counter, 2)
    assert checks == [transitions.CHECKED_REPLAYS, transitions.CHECKED_REPLAYS - 1, transitions.CHECKED_REPLAYS - 2, 0]


def test_weights_replaced_every_step_end_in_eager_counting(eager_graph):
    model, layers, counter = counted_resnet20()
    for step in range(transitions.MAX_RECAPTURES + 2):
        layers[0].weight.data = layers[0].weight.detach().clone()  # as FSDP or a parametrization would
        assert counter.update() == [0] * len(layers)
        assert (counter.graph is None) == (step >= transitions.MAX_RECAPTURES)
    assert counter.graph_failed and eager_graph.replays == 0


def test_a_changed_bit_width_captures_again(eager_graph):
    model, layers, counter = counted_resnet20()
    first = counter.graph
    layers[0].weight_bits = 3
    counts = counter.update()
    assert counts[0] > 0 and sum(counts[1:]) == 0 and eager_graph.replays == 0
    assert counter.graph is not None and counter.graph is not first


def test_graphs_are_off_on_the_cpu_and_with_the_environment_switch(monkeypatch):
    layers = [m for _, m in quantized_layers(quantize(resnet20(1, 4), 2, 2))]
    assert not transitions.graphs_available(layers)  # CPU weights
    monkeypatch.setattr(transitions, "_THREAD_LOCAL_CAPTURE", True)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert transitions.graphs_available(layers)
    monkeypatch.setenv(transitions.GRAPH_ENV, "0")
    assert not transitions.graphs_available(layers)
