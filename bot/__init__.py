"""The bot's brain: plain domain services and the Teams front door (handler.py)."""
