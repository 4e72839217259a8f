"""Pure, synchronous audio conversions. Nothing in this package touches asyncio."""
