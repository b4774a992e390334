"""The model (charrnn/core/model.py): shapes, the gate equations, both input paths, every cell."""

import pytest
import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig
from charrnn.core.cells import CELL_NAMES as CELLS
from charrnn.core.cells import CELLS as CELL_TABLE
from charrnn.core.model import CharRNN, count_parameters, detach
from charrnn.core.reference import ReferenceLSTM

V, H, L, B, T = 11, 16, 2, 3, 7


def make_model(dropout: float = 0.0, dtype=torch.float32, cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=H, num_layers=L, dropout=dropout, weight_drop=0.0, cell=cell)
    return CharRNN(V, config).to(dtype)


def test_shapes_at_every_layer():
    model = make_model()
    seen = {}
    model.rnn.register_forward_hook(
        lambda module, inputs, output: seen.update(one_hot=inputs[0].shape, lstm_out=output[0].shape)
    )
    model.head.register_forward_hook(lambda module, inputs, output: seen.update(head_in=inputs[0].shape))
    ids = torch.randint(0, V, (B, T))
    logits, (h, c) = model(ids)
    assert seen == {"one_hot": (B, T, V), "lstm_out": (B, T, H), "head_in": (B * T, H)}
    assert logits.shape == (B * T, V)
    assert h.shape == c.shape == (L, B, H)
    assert model.init_state(B)[0].shape == (L, B, H)
    assert count_parameters(model) == sum(4 * H * (n_in + H) + 8 * H for n_in in (V, H)) + H * V + V


def test_chunked_forward_equals_whole_forward():
    model = make_model(dropout=0.3).eval()
    ids = torch.randint(0, V, (B, 2 * T))
    whole, whole_state = model(ids)
    first, state = model(ids[:, :T])
    second, chunked_state = model(ids[:, T:], state)
    # logits rows are ordered (b, t): put the two chunks back side by side per stream
    chunked = torch.cat([first.view(B, T, V), second.view(B, T, V)], dim=1).reshape(B * 2 * T, V)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked_state, whole_state, rtol=0, atol=1e-6)


def test_model_matches_the_gate_equations():
    model = make_model(dtype=torch.float64).eval()
    ids = torch.randint(0, V, (B, T))
    logits, (h, c) = model(ids)
    outputs, (ref_h, ref_c), _ = ReferenceLSTM(model.rnn)(F.one_hot(ids, V).double())
    expected = outputs.reshape(B * T, H) @ model.head.weight.T + model.head.bias  # rows ordered (b, t)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close((h, c), (ref_h, ref_c), rtol=0, atol=1e-10)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = make_model(dropout=0.5)
    ids = torch.randint(0, V, (B, T))
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


def test_detach_cuts_the_graph_but_keeps_the_values():
    model = make_model()
    _, state = model(torch.randint(0, V, (B, T)))
    assert state[0].requires_grad
    cut = detach(state)
    assert not cut[0].requires_grad and not cut[1].requires_grad
    assert torch.equal(cut[0], state[0]) and torch.equal(cut[1], state[1])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_any_cell_and_depth_builds_and_runs(cell, num_layers):
    model = CharRNN(V, ModelConfig(hidden_size=8, num_layers=num_layers, dropout=0.2, cell=cell))
    logits, state = model(torch.randint(0, V, (2, 5)))
    assert logits.shape == (10, V)
    assert [tuple(t.shape) for t in state] == [(num_layers, 2, 8)] * (2 if cell == "lstm" else 1)
    assert type(model.rnn).__name__ == {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell]
    gates = len(CELL_TABLE[cell].gates)  # weight blocks per layer: 4, 3, 1
    assert (
        count_parameters(model)
        == sum(gates * H_ * (n_in + H_) + 2 * gates * H_ for H_, n_in in ((8, V), *[(8, 8)] * (num_layers - 1)))
        + 8 * V
        + V
    )


def test_an_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell 'lstmx'"):
        CharRNN(V, ModelConfig(cell="lstmx"))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_the_lookup_path_gives_the_one_hot_path_logits_state_and_gradients(cell, num_layers):
    # A one-hot vector times W_ih is a column of W_ih: the large-vocabulary path reads the column.
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=H, num_layers=num_layers, dropout=0.0, weight_drop=0.0, cell=cell)
    model = CharRNN(V, config).double()
    ids = torch.randint(0, V, (B, T))
    state = tuple(torch.randn_like(t) for t in model.init_state(B))
    results = {}
    for mode in ("one-hot", "lookup"):
        model.zero_grad()
        logits, new_state = model(ids, state, input_path=mode)
        (logits.square().sum() + sum(t.sum() for t in new_state)).backward()
        results[mode] = (logits, *new_state, *(p.grad.clone() for p in model.parameters()))
    for one_hot_value, lookup_value in zip(results["one-hot"], results["lookup"], strict=True):
        torch.testing.assert_close(lookup_value, one_hot_value, rtol=0, atol=1e-12)


def test_large_vocabularies_never_build_a_one_hot_tensor(monkeypatch):
    import charrnn.core.model as model_module
    from charrnn.core.model import ONE_HOT_MAX_VOCAB

    small = CharRNN(ONE_HOT_MAX_VOCAB, ModelConfig(hidden_size=8))
    large = CharRNN(ONE_HOT_MAX_VOCAB + 1, ModelConfig(hidden_size=8))
    assert (small.input_path, large.input_path) == ("one-hot", "lookup")

    def refuse(*args, **kwargs):
        raise AssertionError("one_hot called on the lookup path")

    monkeypatch.setattr(model_module, "one_hot", refuse)
    logits, _ = large(torch.randint(0, ONE_HOT_MAX_VOCAB + 1, (2, 5)))
    assert logits.shape == (10, ONE_HOT_MAX_VOCAB + 1)
    with pytest.raises(AssertionError, match="lookup path"):
        small(torch.randint(0, ONE_HOT_MAX_VOCAB, (2, 5)))


def test_the_lookup_path_applies_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    model = CharRNN(V, ModelConfig(hidden_size=H, num_layers=2, dropout=0.5))
    ids = torch.randint(0, V, (B, T))
    model.eval()
    assert torch.equal(model(ids, input_path="lookup")[0], model(ids, input_path="lookup")[0])
    model.output_dropout.p = 0.0  # only the dropout between the layers is left
    model.train()
    assert not torch.equal(model(ids, input_path="lookup")[0], model(ids, input_path="lookup")[0])


@pytest.mark.parametrize("mode", ["one-hot", "lookup"])
def test_weight_drop_masks_the_recurrent_weights_in_training_only(mode):
    torch.manual_seed(0)
    model = CharRNN(V, ModelConfig(hidden_size=H, num_layers=2, dropout=0.0, weight_drop=0.5)).double()
    plain = CharRNN(V, ModelConfig(hidden_size=H, num_layers=2, dropout=0.0, weight_drop=0.0)).double()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, V, (B, T))
    model.eval(), plain.eval()
    assert torch.equal(model(ids, input_path=mode)[0], plain(ids, input_path=mode)[0])  # off in eval
    model.train(), plain.train()
    torch.manual_seed(1)
    dropped, _ = model(ids, input_path=mode)
    assert not torch.allclose(dropped, plain(ids, input_path=mode)[0])
    # The same masks by hand: W_hh of each layer dropped (scaled by 1 / (1 - p)), nothing else.
    torch.manual_seed(1)
    masked = {f"weight_hh_l{k}": F.dropout(getattr(plain.rnn, f"weight_hh_l{k}"), 0.5, True) for k in range(2)}
    with torch.no_grad():
        for name, weight in masked.items():
            getattr(plain.rnn, name).copy_(weight)
    torch.testing.assert_close(dropped, plain(ids, input_path=mode)[0], rtol=0, atol=1e-12)
    dropped.sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l1.grad is not None
    assert (model.rnn.weight_hh_l0.grad == 0).any()  # the dropped entries get no gradient


def test_the_two_input_paths_draw_the_same_weight_drop_masks():
    torch.manual_seed(0)
    model = CharRNN(V, ModelConfig(hidden_size=H, num_layers=3, dropout=0.0, weight_drop=0.3)).double().train()
    ids = torch.randint(0, V, (B, T))
    outputs = {}
    for mode in ("one-hot", "lookup"):
        torch.manual_seed(2)
        outputs[mode] = model(ids, input_path=mode)[0]
    torch.testing.assert_close(outputs["lookup"], outputs["one-hot"], rtol=0, atol=1e-12)
