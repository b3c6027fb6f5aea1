"""`python -m rksearch`: the same CLI as the `rksearch` command."""
from rksearch.cli import main

main()
