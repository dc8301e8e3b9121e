"""`python -m codesign` is the same as the `codesign` console script."""

from codesign.cli import main

main()
