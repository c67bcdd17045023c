"""What we say: the campaign, its modules and templates, checked before anything runs."""
