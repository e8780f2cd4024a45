from omniweave.shells.cli import main

main()
