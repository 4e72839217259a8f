"""Pure, synchronous audio conversions. Nothing in this package touches asyncio.

May import: nothing of the gateway (numpy and libopus only).
"""
