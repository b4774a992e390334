"""The thread policy (charrnn/threads.py): which count it picks from measured step times, and the
cores it starts from (charrnn/cores.py: affinity, a container's quota and other programs' load,
read from fake cgroup and /proc/stat files).

A simulated machine stands in for the clock: ``Machine.seconds(count)`` is what a step takes at a
thread count, and changing ``busy`` is another program taking cores. No test times anything.
"""

from dataclasses import dataclass, field

import pytest
import torch

from charrnn.cores import OtherLoad, cgroup_cpu_quota, usable_cores
from charrnn.threads import ThreadTuner, candidate_counts, parse_threads, thread_tuner
from tests.conftest import invoke


@dataclass
class Machine:
    """A step costs ``work / count`` seconds on ``cores`` free cores; a thread on a busy core waits
    ``stall`` seconds for it, and every thread waits for the slowest."""

    cores: int = 2
    busy: int = 0  # cores another program holds
    work: float = 1.0
    stall: float = 5.0
    now: float = 0.0
    applied: list[int] = field(default_factory=list)

    def seconds(self, count: int) -> float:
        on_busy_cores = max(0, count - (self.cores - self.busy))
        return self.work / count + (self.stall if on_busy_cores else 0.0)

    def tuner(self, **options) -> ThreadTuner:
        return ThreadTuner(cores=self.cores, apply=self.applied.append, clock=lambda: self.now, **options)

    def run(self, tuner: ThreadTuner, steps: int, size: object = None) -> list[int]:
        """Run ``steps`` steps; the count each ran on (the one last applied)."""
        counts = []
        for _ in range(steps):
            with tuner.step(size):  # the clock is ``now``: the step takes what the machine says
                counts.append(self.applied[-1])
                self.now += self.seconds(self.applied[-1])
        return counts


def test_threads_takes_auto_or_a_whole_number_and_nothing_else():
    assert parse_threads("auto") is None and parse_threads("AUTO") is None
    assert parse_threads("3") == 3 and parse_threads(2) == 2
    for bad in ["0", "-1", "1.5", "many", "", 0, True, 2.0]:
        with pytest.raises(ValueError, match="threads must be auto or a whole number >= 1"):
            parse_threads(bad)


def test_the_counts_tried_go_from_every_core_down_to_one():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [2, 1]
    assert candidate_counts(4) == [4, 3, 2, 1]
    assert candidate_counts(16) == [16, 15, 8, 4, 2, 1]


def test_on_a_quiet_machine_it_keeps_every_core():
    machine = Machine()
    tuner = machine.tuner()
    machine.run(tuner, 20)
    assert tuner.threads == 2 and tuner.changes == [(2, "start")]


def test_with_one_core_busy_it_moves_to_one_thread_within_a_few_steps():
    machine = Machine(busy=1)
    tuner = machine.tuner()
    counts = machine.run(tuner, 30)
    assert tuner.threads == 1 and machine.applied[-1] == 1
    assert counts.count(2) == 1  # after one thread was timed, one step at two showed the stall
    assert tuner.changes == [(1, "start")]


def test_when_the_machine_gets_busy_it_measures_again_and_moves():
    machine = Machine()
    tuner = machine.tuner()
    machine.run(tuner, 20)
    assert tuner.threads == 2
    machine.busy = 1
    counts = machine.run(tuner, 20)
    assert tuner.threads == 1 and counts[-10:] == [1] * 10
    assert tuner.changes[-1][0] == 1 and "slower" in tuner.changes[-1][1]


def test_when_the_machine_gets_quiet_again_a_later_look_moves_back():
    machine = Machine(busy=1)
    tuner = machine.tuner(first_recheck=30.0)
    machine.run(tuner, 20)
    assert tuner.threads == 1
    machine.busy = 0  # one thread runs as fast as before: nothing in its own times says so
    machine.run(tuner, 40)  # 40 s of steps: past the first look again
    assert tuner.threads == 2 and tuner.changes[-1] == (2, "a periodic look")


def test_looks_again_less_often_while_nothing_changes():
    machine = Machine(busy=1)
    tuner = machine.tuner(first_recheck=10.0, last_recheck=40.0)
    slow_steps = []
    for _ in range(6):
        counts = machine.run(tuner, 100)  # 100 s each
        slow_steps.append(counts.count(2))
    assert tuner.threads == 1
    assert slow_steps[0] > slow_steps[-1] > 0  # intervals 10, 20, 40, 40 ...: fewer looks, never none


def test_steps_of_another_size_are_not_taken_for_a_busy_machine():
    machine = Machine()
    tuner = machine.tuner()
    machine.run(tuner, 20, size=1)
    changes = list(tuner.changes)
    machine.work = 10.0  # sixteen streams: every step much longer, at any count
    machine.run(tuner, 20, size=16)
    assert tuner.changes == changes and tuner.threads == 2


def test_jittery_sub_millisecond_steps_on_a_quiet_machine_do_not_make_it_flap():
    import random

    jitter = random.Random(0)
    machine = Machine(work=0.0004, stall=0.002)  # generation: 0.2 ms a character at two threads
    tuner = machine.tuner()
    for _ in range(100_000):  # about 20 s of steps
        taken = machine.seconds(tuner.threads) * jitter.choice([0.7, 1.0, 1.0, 1.3, 1.0, 3.0])
        machine.now += taken
        tuner.record(taken)
    assert tuner.changes == [(2, "start")]


def test_counts_that_need_cores_other_programs_hold_are_never_tried():
    machine = Machine(cores=4, busy=3)  # one core left: every count above one would stall
    tuner = machine.tuner(others=lambda: float(machine.busy), first_recheck=10.0)
    counts = machine.run(tuner, 200)  # 200 s, with several looks again
    assert counts == [1] * 200 and tuner.threads == 1
    machine.busy = 0
    machine.run(tuner, 200)
    assert tuner.threads == 4 and tuner.changes[-1][0] == 4


def test_a_fixed_count_is_set_once_and_never_changed():
    machine = Machine(busy=1)
    tuner = machine.tuner(fixed=2)
    counts = machine.run(tuner, 50)
    assert counts == [2] * 50 and machine.applied == [2] and tuner.changes == []


def test_one_core_measures_nothing():
    machine = Machine(cores=1)
    tuner = machine.tuner()
    assert machine.run(tuner, 10) == [1] * 10 and tuner.changes == []


def test_a_count_set_in_one_thread_is_set_again_in_the_thread_that_steps():
    import threading

    machine = Machine()
    tuner = machine.tuner(fixed=2)
    assert machine.applied == []  # nothing changes until a step runs
    machine.run(tuner, 3)
    worker = threading.Thread(target=lambda: machine.run(tuner, 3))
    worker.start()
    worker.join()
    assert machine.applied == [2, 2]  # once here, once in the worker, where its steps run


def test_other_programs_load_is_the_busy_time_of_our_cpus_less_our_own(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    clock = iter([0.0, 1.0])
    own = iter([0.0, 0.5])
    monkeypatch.setattr("time.perf_counter", lambda: next(clock))
    monkeypatch.setattr("time.process_time", lambda: next(own))
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    # user nice system idle iowait irq softirq steal; cpu2 is not ours and is ignored
    stat.write_text("cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0\ncpu1 100 0 0 900 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n")
    load = OtherLoad({0, 1}, stat)
    stat.write_text(
        "cpu  0 0 0 0 0 0 0 0\ncpu0 200 0 0 900 0 0 0 0\ncpu1 150 0 0 950 0 0 0 0\ncpu2 999 0 0 0 0 0 0 0\n"
    )
    # 1.5 s of busy time on our two CPUs in 1 s of wall time, 0.5 s of it ours: one core's worth of others
    assert load() == pytest.approx(1.0)
    assert OtherLoad({0}, tmp_path / "missing")() is None


def test_quota_from_cgroup_v2_and_v1_files(tmp_path):
    own = tmp_path / "v2" / "kubepods" / "pod1"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "v2" / "cpu.max").write_text("max 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(tmp_path / "v2", proc) == 1.5

    v1 = tmp_path / "v1" / "cpu,cpuacct" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_quota(tmp_path / "v1", proc) == 1.0

    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert cgroup_cpu_quota(tmp_path / "v1", proc) is None
    assert cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "no-such-file") is None


def test_usable_cores_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/\n")
    assert usable_cores(tmp_path, proc) == 3  # 2.5 cores of quota: three threads can use them
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path, proc) == 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    assert usable_cores(tmp_path, proc) == 1


def test_under_torchrun_each_process_gets_its_share_and_outside_it_omp_num_threads_caps(monkeypatch):
    monkeypatch.setattr("charrnn.cores.usable_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's own setting: not the user's cap
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    before = torch.get_num_threads()
    try:
        assert thread_tuner("auto").cores == 2
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert thread_tuner("auto").cores == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert thread_tuner("auto").cores == 8
        assert thread_tuner("auto", device_type="cuda").changes == []  # a GPU: torch's count, unmeasured
        fixed = thread_tuner("3")
        with fixed.step():
            assert fixed.threads == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_bad_threads_value_is_a_usage_error_in_every_command(tiny_run):
    for command in (["train", tiny_run.text], ["generate", tiny_run.best], ["evaluate", tiny_run.best, tiny_run.text]):
        result = invoke(*command, "--threads", "0", "--device", "cpu")
        assert result.exit_code == 2
        assert "threads must be auto or a whole number >= 1, got '0'" in result.output


def test_training_says_what_it_chose_and_why_and_metrics_record_it(tiny_run, tmp_path):
    from charrnn.formats.metrics import read_rows

    out = tmp_path / "run"
    result = invoke(
        "train",
        tiny_run.text,
        "--out",
        out,
        "--max-steps",
        2000,  # ~1 ms steps: the first measurement takes 0.3 s of them at each count, so room for 2+
        "--eval-every",
        1000,
        "--hidden-size",
        16,
        "--batch-size",
        4,
        "--seq-len",
        16,
        "--max-epochs",
        1000,
        "--no-sample",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    chosen = [line for line in result.output.splitlines() if line.startswith("threads: ")]
    cores = usable_cores()
    if cores > 1:
        assert chosen and f"of {cores} cores (start; median step by thread count" in chosen[0]
    rows = read_rows(out)
    assert len(rows) == 2 and all(1 <= row["threads"] <= cores for row in rows)
