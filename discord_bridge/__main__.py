"""`python -m discord_bridge`: run the bridge process."""

from discord_bridge.main import main

main()
