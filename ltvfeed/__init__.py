"""ltvfeed: personalised product feeds ranked for long-term revenue."""
