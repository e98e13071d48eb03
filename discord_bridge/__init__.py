"""The Discord bridge: discord.py-self sessions of the leased accounts, their interactions and events.

Layers (none calls upward): `session` (gateway), `rest` (REST: interactions, uploads),
`interactions` (what a task sends), `consumer` (per-account queue), `forwarder` (events out),
`health` (the account's status), `inbox` (one blocking read per account), `leases`, `rpc`;
`runner` glues them for one held account, `main` into the process.
"""

__all__ = ["Bridge", "main"]


def __getattr__(name: str) -> object:
    # Lazy: importing the package must not import discord.py-self (mjsim tests import the overrides).
    if name in __all__:
        from discord_bridge import main as _main

        return getattr(_main, name)
    raise AttributeError(name)
