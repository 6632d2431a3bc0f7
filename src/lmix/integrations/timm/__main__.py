"""``python -m lmix.integrations.timm``: the launcher (``lmix.integrations.timm.launch``)."""

import sys

from lmix.integrations.timm.launch import main

sys.exit(main())
