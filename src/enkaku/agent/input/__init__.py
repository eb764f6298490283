"""Input injection backends behind one interface (see base.py)."""
