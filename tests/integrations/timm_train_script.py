"""A small training script that follows timm's train.py where mixing is concerned.

Used by the launcher tests (never imported by pytest: no ``test_`` prefix): the same argparse
flags, ``from timm.data import Mixup, FastCollateMixup, create_loader``, train.py's
``mixup_active`` logic, the collate path with the prefetcher and ``Mixup`` on the batch with
``--no-prefetcher``, ``--mixup-off-epoch`` through ``loader.mixup_enabled`` / ``mixup_fn``, a
timm model and ``SoftTargetCrossEntropy``. It writes what it saw (per step: the class of the
mixer in use, the input dtype and the targets) as JSON to ``--record``.
"""

import argparse
import json

import torch
import torchvision
from timm.data import FastCollateMixup, Mixup, create_loader
from timm.loss import SoftTargetCrossEntropy
from timm.models import create_model

parser = argparse.ArgumentParser()
parser.add_argument("data_dir", nargs="?", help="ignored: the data is torchvision's FakeData")
parser.add_argument("--model", default="test_resnet")
parser.add_argument("--num-classes", type=int, default=10)
parser.add_argument("-b", "--batch-size", type=int, default=8)
parser.add_argument("--samples", type=int, default=16)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--workers", type=int, default=0)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--no-prefetcher", action="store_true", default=False)
parser.add_argument("--mixup", type=float, default=0.0)
parser.add_argument("--cutmix", type=float, default=0.0)
parser.add_argument("--cutmix-minmax", type=float, nargs="+", default=None)
parser.add_argument("--mixup-prob", type=float, default=1.0)
parser.add_argument("--mixup-switch-prob", type=float, default=0.5)
parser.add_argument("--mixup-mode", type=str, default="batch")
parser.add_argument("--mixup-off-epoch", default=0, type=int)
parser.add_argument("--smoothing", type=float, default=0.1)
parser.add_argument("--record", required=True)
args = parser.parse_args()
args.prefetcher = not args.no_prefetcher
torch.manual_seed(args.seed)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

model = create_model(args.model, num_classes=args.num_classes).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
dataset = torchvision.datasets.FakeData(args.samples, (3, 32, 32), num_classes=args.num_classes)

collate_fn = None
mixup_fn = None
mixup_active = args.mixup > 0 or args.cutmix > 0.0 or args.cutmix_minmax is not None
if mixup_active:
    mixup_args = dict(
        mixup_alpha=args.mixup,
        cutmix_alpha=args.cutmix,
        cutmix_minmax=args.cutmix_minmax,
        prob=args.mixup_prob,
        switch_prob=args.mixup_switch_prob,
        mode=args.mixup_mode,
        label_smoothing=args.smoothing,
        num_classes=args.num_classes,
    )
    if args.prefetcher:
        collate_fn = FastCollateMixup(**mixup_args)
    else:
        mixup_fn = Mixup(**mixup_args)

loader = create_loader(
    dataset,
    input_size=(3, 32, 32),
    batch_size=args.batch_size,
    is_training=True,
    use_prefetcher=args.prefetcher,
    no_aug=True,
    num_workers=args.workers,
    collate_fn=collate_fn,
    device=device,
)
train_loss_fn = SoftTargetCrossEntropy() if mixup_active else torch.nn.CrossEntropyLoss()

record = {"mixer": type(collate_fn or mixup_fn).__module__, "steps": []}
for epoch in range(args.epochs):
    if args.mixup_off_epoch and epoch >= args.mixup_off_epoch:
        if args.prefetcher and loader.mixup_enabled:
            loader.mixup_enabled = False
        elif mixup_fn is not None:
            mixup_fn.mixup_enabled = False
    model.train()
    for input, target in loader:
        if not args.prefetcher:
            input, target = input.to(device), target.to(device)
            if mixup_fn is not None:
                input, target = mixup_fn(input, target)
        loss = train_loss_fn(model(input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record["steps"].append(
            {
                "epoch": epoch,
                "dtype": str(input.dtype),
                "shape": list(input.shape),
                "targets": target.cpu().tolist(),
                "loss": loss.item(),
            }
        )
with open(args.record, "w") as f:
    json.dump(record, f)
