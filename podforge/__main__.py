from podforge.cli import main

main()
