from posbatch.cli import main

main()
