from muxagent.cli import main

main()
