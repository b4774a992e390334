"""Mixed precision: the choice per device, and a bf16 run on the CPU end to end."""

import dataclasses

import pytest
import torch

from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from charrnn.training.precision import cpu_runs_bf16_lstm, resolve_precision
from tests.conftest import PINNED_THREADS, quiet

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_fp32_on_the_cpu_and_16_bit_on_a_gpu():
    assert resolve_precision("auto", CPU).name == "fp32"
    assert resolve_precision("auto", CUDA, cuda_bf16=True).name == "bf16"
    assert resolve_precision("auto", CUDA, cuda_bf16=False).name == "fp16"
    assert resolve_precision("fp16", CUDA).dtype == torch.float16


def test_only_fp16_gets_a_loss_scaler():
    assert resolve_precision("fp16", CUDA).scales_loss
    assert not resolve_precision("bf16", CUDA).scales_loss
    assert not resolve_precision("bf16", CPU, cpu_bf16=True).grad_scaler().is_enabled()
    assert not resolve_precision("fp32", CPU).grad_scaler().is_enabled()


def test_fp16_on_the_cpu_and_unknown_names_are_refused():
    with pytest.raises(CharRNNError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(CharRNNError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_bf16_on_a_cpu_that_cannot_run_it_is_refused_before_anything_is_written(
    book_slice, tmp_path, tiny_model, tiny_train
):
    assert resolve_precision("bf16", CPU, cpu_bf16=True).name == "bf16"
    with pytest.raises(CharRNNError, match="bf16 needs a CPU with AVX512"):
        resolve_precision("bf16", CPU, cpu_bf16=False)
    # The real query agrees with what this CPU does under bf16 autocast.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            torch.nn.LSTM(3, 3)(torch.ones(2, 1, 3))
            runs = True
        except RuntimeError:
            runs = False
    assert cpu_runs_bf16_lstm() == runs
    # Each CPU takes one branch (an AVX512 one the first, an AVX2-only one the second).
    config = dataclasses.replace(tiny_train, precision="bf16")
    if runs:
        run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
        assert run.precision.name == "bf16"
    else:
        with pytest.raises(CharRNNError, match="bf16 needs a CPU"):
            start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
        assert not (tmp_path / "run").exists()


# oneDNN's bf16 LSTM needs AVX512; with oneDNN off, PyTorch's own kernels run bf16 autocast on any
# CPU, which is what these tests need: the trainer's handling of autocast is the same either way.
@torch.backends.mkldnn.flags(enabled=False)
@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # said by torch whenever oneDNN flags are set
def test_bf16_autocast_trains_and_keeps_float32_weights_and_state(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, precision="bf16", max_steps=4)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    seen = []
    run.model.head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = run.model.head.weight.detach().clone()
    fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    assert torch.bfloat16 in seen  # the matrix multiplies ran in bf16
    assert run.model.head.weight.dtype == torch.float32 and not torch.equal(run.model.head.weight, before)
    assert run.state[0].dtype == torch.float32
    saved = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved.saved_train_config["precision"] == "bf16" and saved.last_val_loss < 5


@torch.backends.mkldnn.flags(enabled=False)
@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # said by torch whenever oneDNN flags are set
def test_stop_and_resume_is_bit_identical_under_bf16(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, precision="bf16", max_steps=6, eval_every=3, save_every=3)
    straight = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    first = start_run(
        book_slice,
        tiny_model,
        dataclasses.replace(config, max_steps=3),
        out_dir=tmp_path / "b",
        device="cpu",
        log=quiet,
    )
    fit(first, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 6}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
