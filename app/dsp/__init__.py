"""Routing bid requests to the demand-side platforms the carrier buys through, and their wins and spend."""
