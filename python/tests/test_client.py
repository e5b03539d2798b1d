"""trqat.client against the fake controller (fake_controller.py) answering in a thread, and split_param_groups.

The real TypeScript controller is exercised end to end by test/e2e/plugin.test.ts.
"""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import make_config
from trqat import protocol as P
from trqat.adapt import quantize
from trqat.client import (Client, ClientError, ControllerGone, ControllerUnreachable, Rejected, RunOver,
                          split_param_groups)
from trqat.quant import quantized_layers

# What a controller sends: its resolved config (python/tests/base_config.json), run length from the script.
CONFIG = make_config(**{"optimizer.name": "sgd", "optimizer.lr": 0.1, "train.steps": None, "train.epochs": 2})
SECRET = "client-test-secret"


@pytest.fixture(autouse=True)
def run_environment(monkeypatch):
    """What `trqat run` gives a script: the run's secret (the endpoint is passed explicitly here)."""
    monkeypatch.setenv("TRQAT_SECRET", SECRET)
    for name in ("TRQAT_ENDPOINT", "TRQAT_AUTH_FILE", "TRQAT_RUN_DIR", "RANK", "WORLD_SIZE", "TRQAT_SERVER_KEY"):
        monkeypatch.delenv(name, raising=False)


def make_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
    return quantize(model, 2, 2)


@pytest.fixture
def controller(fake_controller):
    """Makes fake controllers that answer like `trqat serve` (fake_controller.py, FakeController.serve):
    `config` (default CONFIG) and the faults of serve(); `version`: the protocol version they speak."""
    def make(config=None, version=P.PROTOCOL_VERSION, **serve):
        return fake_controller(secret=SECRET, version=version).serve(config or CONFIG, **serve)
    return make


def train(client, model, optimizer, steps, split=False):
    x, y = torch.randn(6, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2])
    decided = []
    for _ in range(steps):
        if split:
            client.step_begin()
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        if split:
            decided.append(client.step_end(loss, (out.argmax(1) == y).sum(), len(y)))
        else:
            decided.append(client.step(loss, correct=(out.argmax(1) == y).sum(), samples=len(y)))
        optimizer.step()
    return decided


def test_a_training_loop_with_the_client(controller):
    ctl = controller()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=5) as client:
        assert client.total_steps == 5 and client.steps_per_epoch == 5
        assert all(not m.weight_scale.requires_grad for _, m in quantized_layers(model))  # TR: frozen
        train(client, model, optimizer, 3)
        train(client, model, optimizer, 2, split=True)
        client.evaluated(50.0, 1.5, samples=10)
        assert client.should_stop is False and client.current_step == 5
        with pytest.raises(RunOver, match="step 5 is past the end of the run"):
            client.step_begin()
    hello = ctl.of(P.HELLO)[0]
    assert hello["role"] == "client" and hello["rank"] == 0 and hello["world_size"] == 1 and hello["secret"] == SECRET
    ready = ctl.of(P.READY)[0]
    assert [layer["name"] for layer in ready["layers"]] == ["3", "6"]
    assert ready["total_steps"] == 5 and ready["start_step"] == 0 and ready["controller_state"] is None
    steps = ctl.of(P.STEP)
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    assert steps[0]["counts"] is None and steps[0]["last"] is None
    assert all(len(s["counts"]) == 2 for s in steps[1:])
    last = steps[1]["last"]
    assert last["samples"] == 6 and isinstance(last["loss"], float) and 0 <= last["correct"] <= 6
    evaluated = ctl.of(P.EVALUATED)
    assert len(evaluated) == 1 and evaluated[0]["top1"] == 50.0 and evaluated[0]["samples"] == 10
    assert evaluated[0]["last"]["samples"] == 6  # the last step's stats travel with the next message
    bye = ctl.of(P.BYE)[0]
    assert bye["last"] is None and "error" not in bye
    # the LRs landed on the optimizer: quantized weights 0.05, everything else 0.01
    quant = {id(m.weight) for _, m in quantized_layers(model)}
    for g in optimizer.param_groups:
        assert g["lr"] == (0.05 if id(g["params"][0]) in quant else 0.01)
        assert g["momentum"] == 0.9
    assert client.controller_state == {"K": 0.004, "U": 0.05, "last_step": 4}


def test_per_layer_lrs_and_state_dict_round_trip(controller):
    config = make_config(**{"optimizer.name": "adam", "optimizer.lr": 1e-3, "train.steps": 6, "train.epochs": 3})
    ctl = controller(config=config, lrs=lambda t: [0.1 * (t + 1), 0.2 * (t + 1)])
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    client = Client(ctl.endpoint, model=model, optimizer=optimizer)
    assert client.total_steps == 6
    train(client, model, optimizer, 3)
    layers = quantized_layers(model)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert [lr_of[id(m.weight)] for _, m in layers] == pytest.approx([0.3, 0.6])
    state = client.state_dict()
    client.close()
    assert state["step"] == 3 and state["controller"]["last_step"] == 2 and len(state["levels"]["prev"]) == 2

    # a resumed script: same weights, the saved state -> continues at step 3 with counts (not null)
    resumed = Client(ctl.endpoint, model=model, optimizer=optimizer, state=state)
    train(resumed, model, optimizer, 1)
    resumed.close()
    ready = ctl.of(P.READY)[-1]
    assert ready["start_step"] == 3 and ready["controller_state"]["last_step"] == 2
    step = ctl.of(P.STEP)[-1]
    assert step["step"] == 3 and step["counts"] is not None


def test_a_resumed_client_starts_at_the_saved_step(controller):
    ctl = controller()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=5)
    train(client, model, optimizer, 2)
    state = client.state_dict()
    client.close()
    resumed = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=5, state=state)
    assert resumed.current_step == 2 and resumed.state_dict()["step"] == 2  # before its first step
    ran = []
    for step in range(resumed.current_step, resumed.total_steps):  # the loop of docs/plugin.md
        train(resumed, model, optimizer, 1)
        ran.append(step)
    resumed.close()
    assert ran == [2, 3, 4] and [s["step"] for s in ctl.of(P.STEP)] == [0, 1, 2, 3, 4]


def test_misuse_is_named_at_the_users_line(controller):
    ctl = controller()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(6, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2])

    client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=4)
    with pytest.warns(UserWarning, match=r"closing without a single client.step\(\).*stopped at 0/4.*Call client.step\(loss\)") as caught:
        client.close()
    assert caught[0].filename == __file__

    # optimizer.step() before the first client.step(): the first update ran on the user's own LR
    client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=4)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    with pytest.warns(UserWarning, match=r"optimizer.step\(\) ran before the first client.step\(\).*after loss.backward\(\) and before optimizer.step\(\)") as caught:
        client.step()
    assert caught[0].filename == __file__
    # the split form, with optimizer.step() between step_begin() and step_end()
    optimizer.step()
    client.step_begin()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    with pytest.warns(UserWarning, match=r"changed between client.step_begin\(\) and client.step_end\(\)") as caught:
        client.step_end()
    assert caught[0].filename == __file__
    client.close()

    # the documented orders warn about nothing (step() after backward, and before it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for before_backward in (False, True):
            client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=3)
            for _ in range(3):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                if before_backward:
                    client.step(loss)
                loss.backward()
                if not before_backward:
                    client.step(loss)
                optimizer.step()
            client.close()
        with Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=2) as client:
            train(client, model, optimizer, 2, split=True)


def test_an_optimizer_built_before_a_quantized_copy_is_refused_with_the_cause(controller):
    ctl = controller()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"not this model's: trqat.quantize\(model, inplace=False\) returns a copy.*build the optimizer"):
        Client(ctl.endpoint, model=quantize(model, inplace=False), optimizer=optimizer, total_steps=2)


def test_run_length_from_epochs_and_steps_per_epoch(controller):
    ctl = controller()
    model = make_model()
    client = Client(ctl.endpoint, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps_per_epoch=4)
    assert (client.total_steps, client.steps_per_epoch) == (8, 4)  # train.epochs = 2
    with pytest.warns(UserWarning, match="without a single client.step"):
        client.close()


@pytest.mark.parametrize("kwargs, config, error, message", [
    ({}, CONFIG, ClientError, r"run length is unknown: set train.steps .* or pass total_steps=N"),
    ({"total_steps": 3, "optim": "adam"}, CONFIG, ClientError, r"your optimizer is torch.optim.adam.Adam but .*optimizer.name 'sgd'.*--set optimizer.name=adam"),
])
def test_configuration_errors(controller, kwargs, config, error, message):
    ctl = controller(config=config)
    model = make_model()
    optim = kwargs.pop("optim", "sgd")
    optimizer = (torch.optim.Adam if optim == "adam" else torch.optim.SGD)(model.parameters(), lr=0.1)
    with pytest.raises(error, match=message):
        Client(ctl.endpoint, model=model, optimizer=optimizer, **kwargs)


def test_rejected_with_the_reason(controller):
    reason = "protocol version mismatch: the client speaks version 2, this controller speaks version 1"
    ctl = controller(reject=reason)
    model = make_model()
    with pytest.raises(Rejected, match="refused this client: protocol version mismatch") as e:
        Client(ctl.endpoint, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), total_steps=2)
    assert e.value.reason == reason


def test_the_lrs_come_with_the_schedule_for_your_logger(controller):
    ctl = controller()
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=3) as client:
        decided = train(client, model, optimizer, 3)
    assert [(d.step, d.k, d.K, d.R, d.U) for d in decided] == [(0, None, 0.0, 2e-3, 0.05), (1, 1e-3, 0.001, 2e-3, 0.05),
                                                               (2, 1e-3, 0.002, 2e-3, 0.05)]


def test_an_aborted_run_raises_at_the_next_call(controller):
    ctl = controller(abort_after=1)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=100)
    with pytest.raises(ControllerGone, match="the trqat controller ended the run: rank 1 was killed by SIGKILL"):
        train(client, model, optimizer, 100)
    client.close()


def test_a_controller_of_another_version(controller):
    ctl = controller(version=P.PROTOCOL_VERSION + 1)
    model = make_model()
    with pytest.raises(Rejected, match=f"the controller speaks version {P.PROTOCOL_VERSION + 1}, this client speaks version {P.PROTOCOL_VERSION}"):
        Client(ctl.endpoint, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), total_steps=2)


def test_unreachable_and_missing_endpoint(monkeypatch):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ControllerUnreachable, match=r"no trqat controller answered at tcp://127.0.0.1:9 within 0.3 s"):
        Client("tcp://127.0.0.1:9", model=model, optimizer=optimizer, total_steps=2, connect_timeout=0.3)
    with pytest.raises(ClientError, match=r"no trqat controller endpoint: run the script under the controller \(trqat run"):
        Client(model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match="no quantized layers"):
        Client("tcp://127.0.0.1:9", model=nn.Linear(2, 2), optimizer=optimizer)


def test_a_silent_controller_raises_instead_of_hanging(controller, monkeypatch):
    monkeypatch.setenv("TRQAT_HEARTBEAT_MS", "50")
    monkeypatch.setenv("TRQAT_CONTROLLER_TIMEOUT_MS", "400")
    ctl = controller(freeze_after=2)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    client = Client(ctl.endpoint, model=model, optimizer=optimizer, total_steps=100)
    with pytest.raises(ControllerGone, match="stopped answering for 0.4 s"):
        train(client, model, optimizer, 100)
    client.close()


def test_split_param_groups_keeps_hyperparameters_and_state():
    model = make_model()
    bn = [p for n, p in model.named_parameters() if n.startswith("1.")]
    optimizer = torch.optim.SGD([{"params": [p for n, p in model.named_parameters() if not n.startswith("1.")], "weight_decay": 1e-4},
                                 {"params": bn, "weight_decay": 0.0, "lr": 0.5}], lr=0.1, momentum=0.9)
    x = torch.randn(2, 1, 6, 6)
    model(x).sum().backward()
    optimizer.step()
    state = {id(p): s["momentum_buffer"].clone() for p, s in optimizer.state.items()}
    groups = split_param_groups(optimizer, model)
    layers = quantized_layers(model)
    quant = [g for g in groups if g["trqat_role"] == "quant"]
    assert [g["trqat_layer"] for g in quant] == [0, 1]
    assert [g["params"] for g in quant] == [[m.weight] for _, m in layers]
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in quant)
    others = [g for g in groups if g["trqat_role"] == "other"]
    assert [g["weight_decay"] for g in others] == [1e-4, 0.0] and others[1]["lr"] == 0.5
    held = [p for g in groups for p in g["params"]]
    assert len(held) == len({id(p) for p in held}) == len(list(model.parameters()))
    assert {id(p): s["momentum_buffer"] for p, s in optimizer.state.items()}.keys() == state.keys()
    assert split_param_groups(optimizer, model) is groups and len(groups) == 4  # idempotent


def test_split_adds_new_quantizer_scales_and_refuses_missing_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)  # built before quantize
    quantize(model)
    groups = split_param_groups(optimizer, model)
    q = model[1]
    assert any(g["params"] == [q.weight] and g["trqat_role"] == "quant" for g in groups)
    extra = groups[-1]
    assert extra["trqat_role"] == "other" and extra["weight_decay"] == 0.0
    assert {id(p) for p in extra["params"]} == {id(q.act_scale)}  # the weight scale is frozen (TR scheduling)

    model2 = quantize(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)))
    with pytest.raises(ValueError, match=r"does not hold the latent weights of the quantized layer\(s\) 1: build the optimizer"):
        split_param_groups(torch.optim.SGD(model2[2].parameters(), lr=0.1), model2)
