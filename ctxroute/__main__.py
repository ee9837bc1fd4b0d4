from ctxroute.cli import main

main()
