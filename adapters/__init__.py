"""The outside world behind the small protocols that bot/ declares."""
