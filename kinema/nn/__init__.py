"""Building blocks shared by kinema's models."""
