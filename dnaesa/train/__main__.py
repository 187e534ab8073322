"""`python -m dnaesa.train` = `python -m dnaesa train`."""
from dnaesa.train import main

raise SystemExit(main())
