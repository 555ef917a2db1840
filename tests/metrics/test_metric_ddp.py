"""Two CPU processes (torch.distributed, gloo): compute() on each rank is the value over both ranks' samples."""

import datetime
import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from lrp_lightning.metrics import METRICS, get_metric

SHARDS = (slice(0, 3), slice(3, 8))  # uneven on purpose: 3 samples on rank 0, 5 on rank 1

pytestmark = pytest.mark.ddp


def make_batch():
    """Eight 6x6 samples with everything every metric needs; sample 4's map is all zero (NaN for some)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(8, 2, 6, 6, generator=generator, dtype=torch.float64)
    relevance = torch.randn(8, 2, 6, 6, generator=generator, dtype=torch.float64)
    relevance[4] = 0.0
    previous = relevance.sum(1) + 0.5 * torch.randn(8, 6, 6, generator=generator, dtype=torch.float64)
    masks = torch.zeros(8, 6, 6, dtype=torch.bool)
    for index in range(8):
        masks[index, index % 3 : index % 3 + 3, 1:4] = True
    model = nn.Sequential(nn.Flatten(), nn.Linear(72, 4)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(4, 72, generator=generator, dtype=torch.float64))
        model[1].bias.copy_(torch.randn(4, generator=generator, dtype=torch.float64))
        outputs = model(inputs)
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    return dict(
        relevance=relevance,
        model=model,
        inputs=inputs,
        targets=targets,
        outputs=outputs,
        masks=masks,
        previous=previous,
    )


def make_metrics():
    return {
        name: get_metric(name, **({"steps": 3, "patch_size": 2} if cls.needs_model else {}))
        for name, cls in METRICS.items()
    }


def shard(batch, part):
    return {key: (value if key == "model" else value[part]) for key, value in batch.items()}


def _worker(rank, world_size, init_method, folder):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=init_method, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=30)
    )
    try:
        metrics = make_metrics()
        batch = shard(make_batch(), SHARDS[rank])
        for metric in metrics.values():
            metric.update(**batch)
        values = {name: metric.compute().item() for name, metric in metrics.items()}
        local = {name: metric.count.item() for name, metric in metrics.items()}  # unsynced after compute
        (folder / f"rank{rank}.json").write_text(json.dumps([values, local]))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_compute_on_each_rank_equals_the_single_process_value(tmp_path):
    single = make_metrics()
    batch = make_batch()
    for part in SHARDS:  # the same batches as the ranks, so that the seeded random orders agree
        for metric in single.values():
            metric.update(**shard(batch, part))
    expected = {name: metric.compute().item() for name, metric in single.items()}

    mp.spawn(_worker, args=(2, f"tcp://127.0.0.1:{free_port()}", tmp_path), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]

    assert expected["sparseness"] > 0 and expected["region_perturbation"] != 0
    assert single["sparseness"].count.item() == 7  # the all-zero map is not counted
    for rank in (0, 1):
        values, local = results[rank]
        for name, value in expected.items():
            assert abs(values[name] - value) <= 1e-6 * max(1.0, abs(value)), (rank, name, values[name], value)
        assert local["sparseness"] == (3 if rank == 0 else 4)
    # a rank alone would give another value: the states were really reduced across ranks
    alone = make_metrics()["sparseness"]
    alone.update(**shard(batch, SHARDS[0]))
    assert abs(alone.compute().item() - expected["sparseness"]) > 1e-3
