"""omniweave: an open-source omnichannel marketing platform."""

__version__ = "0.1.0"
