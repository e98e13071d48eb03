"""`python -m discord_bridge`: run the bridge process (see `discord_bridge.main`)."""

from __future__ import annotations

from discord_bridge.main import main

if __name__ == "__main__":
    main()
