"""Throughput of lmix's data paths: load time, DeviceLoader and StreamingLoader images/s.

    python benchmarks/bench_data.py [--data-root ../shared/data] [--device cpu|cuda] [--batch-size 128]

Uses real CIFAR-10 when ``--data-root`` holds it (default ``../shared/data``), else synthetic
uint8 data of the same shape. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import lmix.data as D


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(loader, device: torch.device, *, epochs: int, max_batches: int | None) -> float:
    """Images/s over ``epochs`` epochs (after one warm-up batch), the batches consumed on ``device``."""
    loader.set_epoch(0)
    next(iter(loader))
    n, start = 0, time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for i, (x, _) in enumerate(loader):
            n += x.shape[0]
            if max_batches is not None and i + 1 >= max_batches:
                break
    _sync(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stream-batches", type=int, default=40, help="batches of the (slow) streaming path to time")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    result: dict[str, object] = {
        "device": str(device),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)

    try:
        start = time.perf_counter()
        train = D.load_tensors("cifar10", root=args.data_root, train=True)
        result["cifar10_train_load_s"] = round(time.perf_counter() - start, 3)
        images, labels, info, source = train.images, train.labels, train.info, "real CIFAR-10"
    except D.DataNotFoundError:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50000, 3, 32, 32), generator=gen, dtype=torch.uint8)
        labels = torch.randint(0, 10, (50000,), generator=gen)
        info, source = D.dataset_info("cifar10"), "synthetic (no CIFAR-10 under --data-root)"
    result["data"] = source

    device_loader = D.DeviceLoader(
        images, labels, info=info, batch_size=args.batch_size, train=True, device=device, seed=0
    )
    result["device_loader_train_img_per_s"] = round(_rate(device_loader, device, epochs=args.epochs, max_batches=None))
    test_loader = D.DeviceLoader(
        images, labels, info=info, batch_size=args.batch_size, train=False, device=device, seed=0
    )
    result["device_loader_test_img_per_s"] = round(_rate(test_loader, device, epochs=1, max_batches=None))

    base = torch.utils.data.TensorDataset(images, labels)
    stream = D.StreamingLoader(
        base, info=info, batch_size=args.batch_size, train=True, device=device, seed=0, num_workers=args.workers
    )
    result[f"streaming_loader_train_img_per_s_{args.workers}_workers"] = round(
        _rate(stream, device, epochs=1, max_batches=args.stream_batches)
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
