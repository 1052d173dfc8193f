"""`python -m mnistlab`: the same as the `mnistlab` command."""

from mnistlab.cli import main

main()
