"""``lmix methods``: list the registered mixing methods and their parameters."""

from __future__ import annotations

import argparse
import inspect


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the mixing methods")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.mixing.registry import _REGISTRY

    width = max(len(name) for name in _REGISTRY)
    for name, cls in _REGISTRY.items():
        params = [
            f"{n}={p.default!r}"
            for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "seed"
        ]
        print(f"{name:{width}s} {', '.join(params)}")
    print(
        f"{'a+b':{width}s} combine registered methods, e.g. lmix+mixup "
        "(p=..., schedule='random'|'alternate', granularity='batch'|'sample')"
    )
    return 0
