"""Data-parallel training under torchrun (DistributedDataParallel, Gloo on the CPU), two processes."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import PINNED_THREADS, quiet

pytestmark = pytest.mark.slow  # every test starts torchrun

MODEL = ModelConfig(hidden_size=16, num_layers=2, dropout=0.0, weight_drop=0.0)  # no dropout: masks differ per process

_TRAIN_ON_EACH_RANK = """
import sys, torch
from charrnn.config import ModelConfig, TrainConfig
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
text, out, resume_from = sys.argv[1], sys.argv[2], sys.argv[3]
quiet = lambda message: None
if resume_from == "-":
    run = start_run(text, ModelConfig(hidden_size=16, num_layers=2, dropout=0.0, weight_drop=0.0),
                    TrainConfig(batch_size=2, seq_len=8, max_steps=4, eval_every=2, save_every=2,
                                lr_schedule="constant"),
                    out_dir=out, device="cpu", log=quiet)
else:
    run = resume_run(resume_from, out_dir=out, overrides={"max_steps": 8}, device="cpu", log=quiet)
fit(run, log=quiet, progress_bar=False, threads=1)  # pinned: compared bit for bit
torch.save(run.model.state_dict(), f"{out}/rank{run.dist.rank}.pt")
with open(f"{out}/val{run.dist.rank}.txt", "w") as file:  # a file each: two ranks' stdout can interleave
    file.write(repr(run.last_val_loss))
"""


# `charrnn train` as torchrun runs it, with each rank also writing where it stopped (only rank 0
# prints, so its log alone cannot show that the others stopped after the same step).
_CLI_REPORTING_EACH_RANK = """
import json, sys
import charrnn.commands.cli, charrnn.commands.train as train_command
reports, fit = sys.argv[1], train_command.fit
def fit_and_report(run, **options):
    result = fit(run, **options)
    with open(f"{reports}/rank{run.dist.rank}.json", "w") as file:
        json.dump({"step": run.progress.step, "signal": result.stopped_by_signal,
                   "weights": float(sum(p.double().sum() for p in run.model.parameters()))}, file)
    return result
train_command.fit = fit_and_report
sys.argv = ["charrnn", *sys.argv[2:]]
charrnn.commands.cli.main()
"""


# Each collective of `Distributed`, many times over, counting the calls that returned while
# the backend still held one of their tensors.
_COUNT_LATE_RELEASES = """
import sys, torch, torch.distributed as dist
from charrnn.training.distributed import Distributed
cpu = torch.device("cpu")
group = Distributed.from_environment(cpu)
handed = []
def recording(collective):
    def run(*args, **kwargs):
        handed.extend(t for a in args for t in (a if isinstance(a, list) else [a]) if isinstance(t, torch.Tensor))
        return collective(*args, **kwargs)
    return run
dist.all_reduce, dist.all_gather = recording(dist.all_reduce), recording(dist.all_gather)
late = 0
for i in range(300):
    for call in (lambda: group.max(i, cpu), lambda: group.sum([float(i), 1.0], cpu),
                 lambda: group.gather(torch.full((2, 3), float(i)), 1, cpu)):
        handed.clear()
        call()
        late += any(tensor._use_count() > 1 for tensor in handed)  # 1: Python's own reference
with open(f"{sys.argv[1]}/late{group.rank}.txt", "w") as file:
    file.write(str(late))
group.leave()
"""


def torchrun(*args, **kwargs):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, **kwargs)


def single_process(text, out, max_steps):
    # Constant rate: these runs are resumed with a later --max-steps, which moves a decaying schedule's end.
    config = TrainConfig(
        batch_size=4, seq_len=8, max_steps=max_steps, eval_every=2, save_every=2, lr_schedule="constant"
    )
    run = start_run(text, MODEL, config, out_dir=out, device="cpu", log=quiet)
    fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    return run


def test_two_processes_train_like_one_process_with_their_streams_together(book_slice, tmp_path):
    script = tmp_path / "train_each_rank.py"
    script.write_text(_TRAIN_ON_EACH_RANK)
    result = torchrun(script, book_slice, tmp_path / "ddp", "-")
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # DDP keeps the replicas identical
    reference = single_process(book_slice, tmp_path / "one", max_steps=4)  # 2 x 2 streams = 4 streams
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(rank0[name], tensor, rtol=1e-5, atol=1e-6)
    # every rank saw the same validation figure, the single process's
    figures = [float((tmp_path / "ddp" / f"val{rank}.txt").read_text()) for rank in (0, 1)]
    assert figures[0] == figures[1]
    assert abs(figures[0] - reference.last_val_loss) < 1e-5

    # the DDP checkpoint is an ordinary one: a single process resumes it with all 4 streams
    checkpoint = Checkpoint.load(tmp_path / "ddp" / "last.pt")
    assert checkpoint.processes == 2 and checkpoint.saved_train_config["batch_size"] == 4
    assert checkpoint.hidden_state[0].shape == (2, 4, 16)
    torch.testing.assert_close(checkpoint.hidden_state[0], reference.state[0], rtol=1e-5, atol=1e-6)
    resumed = resume_run(tmp_path / "ddp" / "last.pt", overrides={"max_steps": 6}, device="cpu", log=quiet)
    assert resumed.progress.step == 4 and resumed.train_batches.batch_size == 4
    assert fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS).step == 6


def test_a_ddp_run_resumes_a_single_process_checkpoint(book_slice, tmp_path):
    single_process(book_slice, tmp_path / "one", max_steps=4)
    straight = single_process(book_slice, tmp_path / "straight", max_steps=8)
    script = tmp_path / "train_each_rank.py"
    script.write_text(_TRAIN_ON_EACH_RANK)
    result = torchrun(script, book_slice, tmp_path / "two", tmp_path / "one" / "last.pt")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(tmp_path / "two" / "rank1.pt", weights_only=True)
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)
    assert Checkpoint.load(tmp_path / "two" / "last.pt").progress.step == 8


def test_sigterm_to_the_launcher_stops_every_rank_after_the_same_step(book_slice, tmp_path):
    out = tmp_path / "run"
    reports = tmp_path / "reports"
    reports.mkdir()
    script = tmp_path / "cli_reporting_each_rank.py"
    script.write_text(_CLI_REPORTING_EACH_RANK)
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(reports),
            "train",
            str(book_slice),
            "--out",
            str(out),
            "--max-steps",
            "1000000",
            "--eval-every",
            "1000000",
            "--save-every",
            "1000000",
            "--hidden-size",
            "16",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--no-progress",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in launcher.stdout:  # wait until training has begun
        if line.startswith("training on"):
            break
    time.sleep(1.5)
    launcher.send_signal(signal.SIGTERM)
    stdout, _ = launcher.communicate(timeout=90)
    step = Checkpoint.load(out / "last.pt").progress.step
    assert step > 0
    assert stdout.count(f"stopped by SIGTERM at step {step}") == 1  # rank 0 reports, for both
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "last.pt"]  # no best.pt: no validation ran
    ranks = [json.loads((reports / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["step"] for r in ranks] == [step, step]  # every rank stopped after the saved step
    assert [r["signal"] for r in ranks] == [signal.SIGTERM, signal.SIGTERM]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the same replica: no rank took an extra step


def test_a_collective_returns_only_once_gloo_has_let_go_of_its_tensors(tmp_path):
    # Gloo's worker drops a finished collective's tensors just after the caller wakes; after the
    # last collective of a run that could fall in interpreter exit and abort the process.
    script = tmp_path / "count_late_releases.py"
    script.write_text(_COUNT_LATE_RELEASES)
    result = torchrun(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(tmp_path / f"late{rank}.txt").read_text() for rank in (0, 1)] == ["0", "0"]
