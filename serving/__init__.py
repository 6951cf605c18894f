"""Feed scoring, generation and the feed API."""
