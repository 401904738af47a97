"""tierwise."""
