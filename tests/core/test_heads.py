"""The output layers (charrnn/core/heads.py): the adaptive head against PyTorch's own, and its readers."""

import pytest
import torch
import torch.nn.functional as F

from charrnn.config import HEAD_NAMES, ModelConfig
from charrnn.core.heads import HEADS, AdaptiveHead, adaptive_cutoffs
from charrnn.core.model import CharRNN
from charrnn.generation.stepper import Int8Stepper, Stepper
from tests.conftest import run_cli, step_notes

H = 16


def adaptive_model(vocab_size: int, dtype=torch.float32) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(vocab_size, ModelConfig(hidden_size=H, num_layers=2, dropout=0.0, head="adaptive"))
    model.head.sort_by(torch.randint(0, 1000, (vocab_size,)))  # a frequency order unlike the id order
    return model.to(dtype).eval()


def test_the_declared_heads_are_the_ones_built():
    assert HEAD_NAMES == HEADS == ("full", "adaptive")


@pytest.mark.parametrize("vocab_size", [2, 3, 65, 9000])
@pytest.mark.parametrize("hidden_size", [4, 8, 256])
def test_cutoffs_are_increasing_and_inside_the_vocabulary(hidden_size, vocab_size):
    cutoffs = adaptive_cutoffs(hidden_size, vocab_size)
    assert cutoffs and cutoffs == sorted(set(cutoffs)) and cutoffs[0] > 0 and cutoffs[-1] < vocab_size
    head = AdaptiveHead(hidden_size, vocab_size)  # PyTorch accepts them
    assert all(inner.out_features >= 1 for inner, _ in head.softmax.tail)  # no projection of width 0
    assert len(adaptive_cutoffs(256, 9000)) == 2 and len(adaptive_cutoffs(8, 9000)) == 1


@pytest.mark.slow
def test_an_impossible_adaptive_head_is_one_clear_error(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("abcabcabc " * 50, encoding="utf-8")
    result = run_cli("train", text, "--head", "adaptive", "--hidden-size", 3, "--max-steps", 1, "--out", tmp_path / "r")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--head adaptive needs" in result.stderr and not (tmp_path / "r" / "last.pt").exists()


def test_sort_by_puts_the_most_frequent_characters_first():
    head = AdaptiveHead(H, 6)
    head.sort_by(torch.tensor([5.0, 50.0, 0.0, 7.0, 50.0, 1.0]))
    assert head.rank.tolist() == [3, 0, 5, 2, 1, 4]  # ties (ids 1 and 4) in id order


def test_adaptive_scores_are_log_probabilities_in_id_order():
    model = adaptive_model(65)
    hidden = torch.randn(10, H)
    scores = model.head(hidden)  # (10, V)
    torch.testing.assert_close(torch.logsumexp(scores, dim=1), torch.zeros(10), rtol=0, atol=1e-5)
    in_rank_order = model.head.softmax.log_prob(hidden)
    for char_id in (0, 17, 64):
        assert torch.equal(scores[:, char_id], in_rank_order[:, model.head.rank[char_id]])


@pytest.mark.parametrize("head", HEADS)
def test_the_training_loss_is_the_cross_entropy_of_the_scores_everything_else_reads(head):
    torch.manual_seed(1)
    model = CharRNN(700, ModelConfig(hidden_size=H, num_layers=1, dropout=0.0, head=head)).eval()
    if head == "adaptive":
        model.head.sort_by(torch.rand(700))
    ids, targets = torch.randint(0, 700, (3, 9)), torch.randint(0, 700, (3, 9))
    logits, state = model(ids)  # (27, V)
    loss, loss_state = model(ids, targets=targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets.reshape(-1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_state, state, rtol=0, atol=0)
    loss.backward()
    assert all(p.grad is not None for p in model.rnn.parameters())


@pytest.mark.parametrize("vocab_size", [65, 700])  # both input paths
@pytest.mark.parametrize("streams", [1, 17])
def test_the_generation_step_matches_the_model_with_an_adaptive_head(vocab_size, streams):
    model = adaptive_model(vocab_size, torch.float64)
    stepper = Stepper(model)
    state = step_state = tuple(torch.randn_like(t) for t in model.init_state(streams))
    ids = torch.randint(0, vocab_size, (streams, 5))
    for t in range(5):
        expected, state = model(ids[:, t : t + 1], state)
        logits, step_state = stepper.step(ids[:, t], step_state)
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(step_state, state, rtol=0, atol=1e-12)


def test_int8_keeps_the_adaptive_head_in_float32_and_stays_close():
    model = adaptive_model(700)
    stepper = Int8Stepper(model)
    assert set(stepper.packed) == {"0.hh", "1.cat"}  # the recurrent layers only
    ids = torch.randint(0, 700, (4,))
    expected, _ = Stepper(model).step(ids, model.init_state(4))
    logits, _ = stepper.step(ids, model.init_state(4))
    torch.testing.assert_close(logits, expected, rtol=0, atol=2e-3)


def test_int8_with_an_adaptive_head_runs_eagerly_and_says_so():
    from charrnn.generation.runtime import StepRuntime

    notes = []
    stepper = StepRuntime(adaptive_model(700), compile="on", quantize="int8", note=notes.append).stepper(1)
    assert type(stepper) is Int8Stepper  # not the compiled int8 step, whose draw fuses a Linear head
    assert step_notes(notes) == ["int8 steps with an adaptive head run eagerly (the float32 step compiles)"]


# oneDNN's bf16 LSTM needs AVX512; with oneDNN off, PyTorch's own kernels run the LSTM under bf16
# autocast on any CPU. The head's handling of autocast, which this checks, is the same either way.
@torch.backends.mkldnn.flags(enabled=False)
@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # said by torch whenever oneDNN flags are set
def test_under_bf16_autocast_the_adaptive_head_still_scores_in_float32():
    model = adaptive_model(700)
    ids = torch.randint(0, 700, (2, 5))
    plain, _ = model(ids, targets=ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model(ids, targets=ids)
        logits, _ = model(ids)
    assert loss.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(loss, plain, rtol=0, atol=0.05)  # only the LSTM ran in bf16
