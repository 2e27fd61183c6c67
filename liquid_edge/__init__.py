"""liquid-edge: Liquid-S4 from training to the edge."""
__version__ = "0.1.0"
