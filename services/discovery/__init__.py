"""Discovery: finds leads (searches, signals, posts, LinkedIn search URLs, CSV, manual) and dedupes them."""
