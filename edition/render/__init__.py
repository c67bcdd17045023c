"""How it looks: versions rendered once, the personal layer per customer, encoded per format."""
