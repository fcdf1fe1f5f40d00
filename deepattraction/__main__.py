"""`python -m deepattraction ...`: the `deepattraction` command."""
import sys

from deepattraction.entry import main

sys.exit(main())
