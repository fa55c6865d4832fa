"""``dexctl``: the DEX command line."""
