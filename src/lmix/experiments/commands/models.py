"""``lmix models``: list the registered models with their parameter counts."""

from __future__ import annotations

import argparse

from lmix.errors import LmixValueError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the models",
        description="List the registered models: paper model or not, parameter count (computed), published "
        "count (10 classes), hook points for hidden-layer mixing, options, description.",
    )
    p.add_argument("--num-classes", type=int, default=10, help="classes to count parameters for (default: 10)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels to count parameters for (default: 3)")
    p.set_defaults(func=run)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def run(args: argparse.Namespace) -> int:
    from lmix.models import count_parameters, list_models, model_info

    if args.num_classes < 2:
        raise LmixValueError(f"--num-classes must be >= 2, got {args.num_classes}")
    if args.in_channels < 1:
        raise LmixValueError(f"--in-channels must be >= 1, got {args.in_channels}")
    header = [
        "name",
        "paper",
        f"params ({args.num_classes} cls)",
        "published (10 cls)",
        "hooks",
        "options",
        "description",
    ]
    rows = [header]
    for name in list_models():
        info = model_info(name)
        params = count_parameters(name, args.num_classes, args.in_channels)
        if info.published_params is None:
            published = "-"
        else:
            published = f"{_millions(info.published_params)} ({(info.params / info.published_params - 1) * 100:+.2f}%)"
        options = ", ".join(f"{k}={v!r}" for k, v in info.options.items()) or "-"
        rows.append(
            [
                name,
                "yes" if info.paper else "no",
                f"{params:,}",
                published,
                str(info.num_hook_points),
                options,
                info.description,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1])
    print(
        "published: the count in the model's paper (for 10 classes; the % compares ours at 10 classes and 3 "
        "channels). hooks: forward(x, hook=f, hook_at=i) for i in 0..hooks-1, 0 being the input image."
    )
    return 0
