"""``train.batch_workers``: batches made in spawned worker processes are the inline batches."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import pytest
import torch

from robench.augment import create_augmentation
from robench.bench.train import bench_train
from robench.cli import main
from robench.errors import Interrupted
from robench.pipeline import train
from robench.runs import load_checkpoint, read_metrics, run_id
from robench.training.batch_stage import BatchStage, BatchWorkers
from robench.training.trainer import Trainer, batch_workers

IPMIX = ("augment.method='ipmix'", "augment.options={mixing_count = 50}")


def _assert_same(a, b) -> None:
    wa, wb = (load_checkpoint(r / "checkpoint.pt")["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    assert read_metrics(a)["metrics"] == read_metrics(b)["metrics"]


def test_workers_make_the_same_batches_as_the_training_process(tiny_config, tmp_path) -> None:
    """Two epochs (the workers persist across them), two workers taking alternate steps."""
    inline = tiny_config(*IPMIX, f'results_dir="{tmp_path}/inline"')
    workers = tiny_config(*IPMIX, "train.batch_workers=2", f'results_dir="{tmp_path}/workers"')
    assert run_id(inline) == run_id(workers)  # where batches are made is not what a run is
    runs = train(inline, progress=False), train(workers, progress=False)
    _assert_same(*runs)
    # the run records how many processes made its batches (the config says -1 for auto)
    assert [read_metrics(r)["training"]["batch_workers"] for r in runs] == [0, 2]


def test_stop_mid_epoch_with_workers_then_resume_equals_straight(
    tiny_config, tmp_path, monkeypatch
) -> None:
    """The workers are steps ahead when the stop comes: their batches are dropped, and the
    resumed run makes them again from the same seeds."""
    straight = train(tiny_config(*IPMIX, f'results_dir="{tmp_path}/a"'), progress=False)
    cfg = tiny_config(*IPMIX, "train.batch_workers=1", f'results_dir="{tmp_path}/b"')
    real_due = Trainer._checkpoint_due

    def stop_at_step_1(self: Trainer, step: int) -> bool:
        self._stop_requested = self._stop_requested or step == 1
        return real_due(self, step)

    monkeypatch.setattr(Trainer, "_checkpoint_due", stop_at_step_1)
    with pytest.raises(Interrupted, match=r"epoch 1, step 2"):
        train(cfg, progress=False)
    monkeypatch.undo()
    _assert_same(straight, train(cfg, resume=True, progress=False))


def test_auto_means_two_workers_on_cuda_and_none_on_the_cpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (batch_workers(-1, cuda), batch_workers(-1, cpu)) == (2, 0)
    assert (batch_workers(0, cuda), batch_workers(3, cpu)) == (0, 3)


# every method on a GPU; on the CPU one (each case spawns its workers: seconds here)
CASES = [("ipmix", "cpu")] + [
    (name, "cuda") for name in ("ipmix", "pixmix", "augmix", "cutmix") if torch.cuda.is_available()
]


@pytest.mark.parametrize(("name", "device"), CASES)
def test_worker_batches_equal_inline_batches(name: str, device: str) -> None:
    """The hand-over (shared memory on the CPU, CUDA IPC on a GPU) delivers every batch
    complete and in step order, equal to the batch made in this process."""
    options = {"mixing_count": 50} if name in ("ipmix", "pixmix") else {}
    plugin = create_augmentation(name, num_classes=10, **options)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(200) % 10
    stage = BatchStage(images, labels, plugin, torch.device(device))
    order = torch.randperm(200, generator=gen)
    tasks = [(step, order[i : i + 32], [7, step]) for step, i in enumerate(range(0, 200, 32))]
    inline = [stage[task] for task in tasks]
    workers = BatchWorkers(stage, 2)
    try:
        made = [
            tuple(t.clone() if torch.is_tensor(t) else t for t in b) for b in workers.batches(tasks)
        ]
    finally:
        workers.close()
    assert [b[0] for b in made] == [t[0] for t in tasks]
    for a, b in zip(made, inline, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(a[1:], b[1:], strict=True))


def test_bench_train_times_each_variant_against_its_own_reference() -> None:
    table = bench_train(
        ["ipmix"],
        n_images=16,
        batch_size=8,
        device="cpu",
        options={"ipmix": {"mixing_count": 8}},
        variants=[[], ["channels_last=false"]],
    )
    assert table["variant"].tolist() == ["default", "channels_last=false"]
    assert (table["images_per_s"] > 0).all() and (table["reference_images_per_s"] > 0).all()
    ratio = table["reference_images_per_s"] / table["images_per_s"]
    assert ratio.tolist() == pytest.approx(table["time_ratio_to_reference"].tolist())
    assert (table["bare_step_images_per_s"] > 0).all()
    to_bare = table["bare_step_images_per_s"] / table["images_per_s"]
    assert to_bare.tolist() == pytest.approx(table["time_ratio_to_bare_step"].tolist())


def test_bench_train_refuses_an_unknown_setting(capsys) -> None:
    assert main(["bench", "train", "--variant", "batch_workers=many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robench: error: config key 'train.batch_workers'")
    assert len(err.splitlines()) == 1


def test_the_set_travels_to_workers_by_value_not_through_shared_memory() -> None:
    """torch would send CPU tensors through shared memory, which containers often cap at 64 MB;
    the set must go through the pipe instead (a pickle that holds the bytes)."""
    images = torch.randint(0, 256, (500, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(500) % 10
    stage = BatchStage(
        images, labels, create_augmentation("baseline", num_classes=10), torch.device("cpu")
    )
    stage[0, torch.arange(4), [0]]  # makes the device copy, which must stay behind
    sent = ForkingPickler.dumps(stage)
    assert len(sent) > images.numel()
    copy = pickle.loads(sent)
    assert torch.equal(copy.images, images) and torch.equal(copy.labels, labels)
    assert copy._on_device is None
