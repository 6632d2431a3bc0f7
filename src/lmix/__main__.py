"""``python -m lmix`` (also what ``torchrun -m lmix train ...`` runs)."""

import sys

from lmix.experiments.cli import main

sys.exit(main())
