"""Guided conversations: one botbuilder-dialogs waterfall per module."""
