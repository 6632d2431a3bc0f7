"""Sub-commands of the ``lmix`` CLI; each module has ``add_parser(subparsers)`` and sets ``func``."""
