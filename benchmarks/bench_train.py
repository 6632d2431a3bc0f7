"""Throughput of the whole training step against the model-only step, measured in the same run.

Whole step = ``lmix.experiments.train.trainer.train_epoch``: the DeviceLoader (uint8 data on the device,
batched random crop + flip + normalisation), the mixer, forward, mixed loss, backward, SGD step,
LR scheduler and the on-device statistics: exactly what ``lmix train`` runs.
Model-only step = forward, cross-entropy, backward and SGD step on pre-made normalised tensors.

The ratio (whole / model-only images per second) says what the data pipeline and the mixing
cost: 1.0 means they are free. Runs alternate between the two so that drifts of a shared
machine hit both; the median over ``--repeats`` is reported.

Examples:
    python benchmarks/bench_train.py                      # small model + PreAct-ResNet-18, synthetic CIFAR-sized data
    python benchmarks/bench_train.py --data cifar10 --data-root ../shared/data/cifar10
    python benchmarks/bench_train.py --device cuda --amp bf16 --channels-last --models preact_resnet18 --steps 200
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from lmix.data import DeviceLoader, dataset_info, load_tensors
from lmix.experiments.train.step import eager_step, train_epoch
from lmix.mixing import create_mixer
from lmix.models import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(args, device):
    if args.data == "synthetic":
        info = dataset_info("cifar10")
        g = torch.Generator().manual_seed(0)
        n = args.batch_size * args.steps
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
        return images, labels, info
    data = load_tensors(args.data, root=args.data_root, train=True)
    n = args.batch_size * args.steps
    return data.images[:n], data.labels[:n], data.info


def bench_model(name: str, args, device: torch.device) -> dict:
    images, labels, info = _data(args, device)
    num_classes = info.num_classes or int(labels.max()) + 1
    torch.manual_seed(0)
    kwargs = {"width": args.width} if args.width and name in ("simple_cnn", "preact_resnet_tiny") else {}
    model = create_model(name, num_classes=num_classes, in_channels=info.in_channels, **kwargs).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    loader = DeviceLoader(
        images, labels, info=info, batch_size=args.batch_size, train=True, device=device, seed=0, drop_last=True
    )
    step = eager_step(model, create_mixer(args.method, seed=0), autocast=autocast, memory_format=fmt)
    # Pre-made, already normalised batches for the model-only step.
    mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    premade = [
        (
            ((images[i : i + args.batch_size].to(device).float() / 255 - mean) / std).contiguous(memory_format=fmt),
            labels[i : i + args.batch_size].to(device),
        )
        for i in range(0, args.batch_size * args.steps, args.batch_size)
    ]

    def whole(epoch: int) -> float:
        loader.set_epoch(epoch)
        _sync(device)
        t0 = time.perf_counter()
        _, _, seen = train_epoch(model, loader, step, optimizer=opt, scaler=scaler, scheduler=sched)
        _sync(device)
        return seen / (time.perf_counter() - t0)

    def model_only(_: int) -> float:
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        for x, y in premade:
            with autocast:
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        _sync(device)
        return len(premade) * args.batch_size / (time.perf_counter() - t0)

    whole(10_000), model_only(10_000)  # warm-up (allocator, kernels, autocast caches)
    w, m = [], []
    for r in range(args.repeats):
        # Alternate the order so that a slow phase of a shared machine does not favour one side.
        if r % 2 == 0:
            w.append(whole(r)), m.append(model_only(r))
        else:
            m.append(model_only(r)), w.append(whole(r))
    mw, mm = statistics.median(w), statistics.median(m)
    return {
        "model": name,
        "method": args.method,
        "data": args.data,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "whole_img_per_s": mw,
        "model_only_img_per_s": mm,
        "ratio": mw / mm,
        "whole_runs": w,
        "model_only_runs": m,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="simple_cnn,preact_resnet18", help="comma-separated model names")
    p.add_argument("--width", type=int, default=None, help="width of the small models")
    p.add_argument("--method", default="lmix")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--steps", type=int, default=None, help="batches per measured pass (default: 20 small, 2 large on CPU)"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", default="synthetic", help="synthetic (CIFAR-sized random uint8) or a data set name")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, amp {args.amp}, "
        f"channels_last {args.channels_last}, method {args.method}, data {args.data}, batch {args.batch_size}, "
        f"median of {args.repeats}"
    )
    print(f"{'model':20s} {'steps':>5s} {'whole img/s':>12s} {'model-only img/s':>17s} {'ratio':>6s}")
    results = []
    for name in args.models.split(","):
        steps = args.steps
        if steps is None:
            steps = 20 if name in ("simple_cnn", "preact_resnet_tiny") or device.type == "cuda" else 2
        res = bench_model(name, argparse.Namespace(**{**vars(args), "steps": steps}), device)
        results.append(res)
        print(
            f"{name:20s} {steps:5d} {res['whole_img_per_s']:12.1f} {res['model_only_img_per_s']:17.1f} "
            f"{res['ratio']:6.3f}"
        )
    if args.json:
        from lmix.experiments.io import atomic_write_json

        atomic_write_json(args.json, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
