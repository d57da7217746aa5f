from wabridge.cli import main

main()
