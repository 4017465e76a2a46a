"""Tools a seat (or the judge) may call: web search, page fetch, and Python in a sandbox."""
