"""`python -m dnaesa` runs the command-line interface."""
from dnaesa.cli import main

raise SystemExit(main())
