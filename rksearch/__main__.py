from rksearch.cli import main

main()
