"""`python -m pakd` (and `torchrun -m pakd`): the same as the `pakd` command."""
import sys

from pakd.cli import main

sys.exit(main())
