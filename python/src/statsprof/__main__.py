"""python3 -m statsprof: see statsprof.cli."""
from statsprof.cli import main

main()
