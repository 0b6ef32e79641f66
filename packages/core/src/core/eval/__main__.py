from core.eval.cli import main

main()
