"""What comes back: events, preferences, clicks and experiments (issues 20 and 21)."""
