import sys

from .cli import main

__all__: list[str] = []  # a script: `python -m toolkit`

sys.exit(main())
