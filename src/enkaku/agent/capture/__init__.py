"""Screen capture backends behind one interface (see base.py)."""
