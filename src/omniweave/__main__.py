from omniweave.shells.cli.main import main

main()
