"""enkaku: self-hosted, end-to-end encrypted attended remote support."""

__version__ = "0.1.0"
