"""audit: is an image classifier right for the right reasons?"""

__version__ = "0.1.0"
