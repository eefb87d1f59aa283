"""``python -m mmsin`` (and ``torchrun ... -m mmsin train``): the ``mmsin`` command."""

import sys

from mmsin.cli import main

sys.exit(main())
